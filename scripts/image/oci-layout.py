#!/usr/bin/env python3
"""One release image as an OCI image layout, for machines without Nix.

The layout is nix2container's (nix/images.nix), from the same description
(deploy/images.json):
  layer 1 (shared by every image): /etc/passwd, /etc/group, the CA bundle,
          /tmp (1777);
  layer 2 (the image's own):       the application tree: bin/<binary>, and
          share/jessy/features for the BDD suite.
Every entry is owned by 0:0 with mtime 1 (as files in the Nix store), in
sorted order, so the same inputs give the same layer, config and image id.
scripts/image/write-archive.sh then turns the layout into a docker-archive
with skopeo, and scripts/image/check-archive.sh checks that archive.

Usage: oci-layout.py --spec deploy/images.json --name jessy-core \
         --app DIR --ca-bundle FILE --version V --revision REV \
         --created RFC3339 --out LAYOUT-DIR
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import platform
import shutil
import sys
import tarfile
from pathlib import Path

MTIME = 1
ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


def entry(name: str, mode: int, data: bytes | None = None) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.mode = mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mtime = MTIME
    if data is None:
        info.type = tarfile.DIRTYPE
    else:
        info.size = len(data)
    return info, data


def layer(entries: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """An uncompressed tar: parents before children, names sorted."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for info, data in sorted(entries, key=lambda e: e[0].name):
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def with_parents(files: dict[str, tuple[int, bytes]], dir_modes: dict[str, int]) -> list:
    dirs: set[str] = set()
    for path in files:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    out = [entry(d, dir_modes.get(d, 0o755)) for d in sorted(dirs | set(dir_modes))]
    out += [entry(p, mode, data) for p, (mode, data) in files.items()]
    return out


def base_layer(spec: dict, ca_bundle: Path) -> bytes:
    files = {
        "etc/passwd": (0o644, spec["passwd"].encode()),
        "etc/group": (0o644, spec["group"].encode()),
        "etc/ssl/certs/ca-certificates.crt": (0o644, ca_bundle.read_bytes()),
    }
    return layer(with_parents(files, {"tmp": 0o1777}))


def app_layer(app: Path) -> bytes:
    files = {}
    for path in sorted(p for p in app.rglob("*") if p.is_file()):
        mode = 0o755 if path.stat().st_mode & 0o111 else 0o644
        files[path.relative_to(app).as_posix()] = (mode, path.read_bytes())
    if not files:
        raise SystemExit(f"oci-layout: {app} holds no files")
    return layer(with_parents(files, {}))


class Layout:
    def __init__(self, out: Path):
        self.blobs = out / "blobs" / "sha256"
        self.blobs.mkdir(parents=True)
        (out / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}')
        self.out = out

    def blob(self, data: bytes, media_type: str) -> dict:
        digest = hashlib.sha256(data).hexdigest()
        (self.blobs / digest).write_bytes(data)
        return {"mediaType": media_type, "digest": f"sha256:{digest}", "size": len(data)}


def canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for flag in ("spec", "name", "app", "ca-bundle", "version", "revision", "created", "out"):
        ap.add_argument(f"--{flag}", required=True)
    a = ap.parse_args()

    spec = json.loads(Path(a.spec).read_text())
    image = spec["images"][a.name]
    out = Path(a.out)
    if out.exists():
        shutil.rmtree(out)
    layout = Layout(out)

    layers = [base_layer(spec, Path(a.ca_bundle)), app_layer(Path(a.app))]
    layer_descs = [layout.blob(l, "application/vnd.oci.image.layer.v1.tar") for l in layers]

    labels = dict(spec["labels"])
    labels.update({
        "org.opencontainers.image.title": a.name,
        "org.opencontainers.image.description": image["description"],
        "org.opencontainers.image.version": a.version,
        "org.opencontainers.image.revision": a.revision,
        "org.opencontainers.image.created": a.created,
    })
    config = {
        "User": f"{spec['user']['uid']}:{spec['user']['gid']}",
        "Entrypoint": [f"/bin/{image['binary']}"],
        "Env": [f"{k}={v}" for k, v in image["env"].items()],
        "Labels": labels,
    }
    if "port" in image:
        config["ExposedPorts"] = {f"{image['port']}/tcp": {}}
    machine = platform.machine()
    if machine not in ARCH:
        raise SystemExit(f"oci-layout: no OCI architecture known for {machine}")
    image_config = {
        "created": a.created,
        "architecture": ARCH[machine],
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers",
                   "diff_ids": [d["digest"] for d in layer_descs]},
    }
    config_desc = layout.blob(canonical(image_config), "application/vnd.oci.image.config.v1+json")
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc, "layers": layer_descs}
    manifest_desc = layout.blob(canonical(manifest), "application/vnd.oci.image.manifest.v1+json")
    manifest_desc["annotations"] = {"org.opencontainers.image.ref.name": spec["tag"]}
    (out / "index.json").write_bytes(canonical({"schemaVersion": 2, "manifests": [manifest_desc]}))
    print(f"oci-layout: {a.name} -> {out} (config {config_desc['digest'][:19]}, "
          f"layers {', '.join(str(d['size']) for d in layer_descs)} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
