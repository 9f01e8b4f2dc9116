#!/usr/bin/env python3
"""The image scripts the flake and the non-Nix path share, run on real
archives written by skopeo (the docker-archive writer nix2container's skopeo
shares), with small hand-made ELF files standing in for the binaries:

- scripts/image/oci-layout.py + write-archive.sh give an archive that
  scripts/image/check-archive.sh accepts, named as skopeo names it
  (docker.io/library/NAME:TAG: the check the flake had before compared
  with NAME:TAG and failed on every real archive);
- check-archive.sh refuses what must never ship: a dynamic executable, a
  shell, a configuration that differs from deploy/images.json, layers over
  the size limit;
- the same inputs give the same image id (the config digest).

Needs: skopeo, jq, GNU tar, python3. Run: python3 tests/image/test_image_scripts.py
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "deploy" / "images.json"
SCRIPTS = ROOT / "scripts" / "image"
CREATED = "2026-08-03T18:38:27Z"


def elf(interp: bool) -> bytes:
    """A minimal ELF64 executable header with one PT_LOAD and, if asked, a
    PT_INTERP program header (what a dynamically linked program carries)."""
    phdrs = [struct.pack("<IIQQQQQQ", 1, 5, 0, 0, 0, 0, 0, 0x1000)]
    if interp:
        phdrs.append(struct.pack("<IIQQQQQQ", 3, 4, 0, 0, 0, 28, 28, 1))
    header = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    header += struct.pack("<HHIQQQIHHHHHH", 3, 0x3E, 1, 0x1000, 64, 0, 0, 64, 56,
                          len(phdrs), 64, 0, 0)
    return header + b"".join(phdrs) + b"/lib64/ld-linux-x86-64.so.2\0"


class ImageScripts(unittest.TestCase):
    def setUp(self):
        self.tmp = Path(tempfile.mkdtemp(prefix="jessy-image-test."))
        self.addCleanup(shutil.rmtree, self.tmp)
        self.ca = self.tmp / "ca.crt"
        self.ca.write_text("-----BEGIN CERTIFICATE-----\nstand-in\n-----END CERTIFICATE-----\n")

    def app(self, name: str, files: dict[str, bytes]) -> Path:
        app = self.tmp / f"app-{name}-{len(os.listdir(self.tmp))}"
        for rel, data in files.items():
            p = app / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
            p.chmod(0o755)
        return app

    def archive(self, name: str, app: Path, spec: Path = SPEC) -> tuple[Path, str]:
        layout = self.tmp / f"layout-{app.name}"
        subprocess.run([sys.executable, str(SCRIPTS / "oci-layout.py"), "--spec", str(spec),
                        "--name", name, "--app", str(app), "--ca-bundle", str(self.ca),
                        "--version", "0.1.0", "--revision", "abc123", "--created", CREATED,
                        "--out", str(layout)], check=True, capture_output=True)
        out = self.tmp / f"{app.name}.tar"
        subprocess.run(["bash", str(SCRIPTS / "write-archive.sh"), f"oci:{layout}:latest",
                        str(out), name, "latest"], check=True)
        index = json.loads((layout / "index.json").read_text())
        manifest = json.loads((layout / "blobs" / "sha256" /
                               index["manifests"][0]["digest"].split(":")[1]).read_text())
        return out, manifest["config"]["digest"]

    def check(self, name: str, archive: Path) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", str(SCRIPTS / "check-archive.sh"), "--spec", str(SPEC),
                               "--name", name, "--version", "0.1.0", "--revision", "abc123",
                               "--created", CREATED, str(archive)],
                              capture_output=True, text=True)

    def assertRefused(self, result, why: str):
        self.assertNotEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assertIn(why, result.stderr)

    def test_a_static_image_passes_and_is_named_as_skopeo_names_it(self):
        archive, _ = self.archive("jessy-core", self.app("core", {"bin/jessy-core": elf(False)}))
        result = self.check("jessy-core", archive)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
        # What the flake's check compared against before the fix, and what
        # skopeo really writes.
        self.assertNotEqual(manifest[0]["RepoTags"][0], "jessy-core:latest")
        self.assertEqual(manifest[0]["RepoTags"], ["docker.io/library/jessy-core:latest"])

    def test_the_bdd_image_needs_its_features(self):
        bdd = {"bin/jessy-bdd": elf(False)}
        archive, _ = self.archive("jessy-test", self.app("bdd", bdd))
        self.assertRefused(self.check("jessy-test", archive), "no .feature file")
        bdd["share/jessy/features/a.feature"] = b"Feature: a\n"
        archive, _ = self.archive("jessy-test", self.app("bdd", bdd))
        result = self.check("jessy-test", archive)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)

    def test_a_dynamic_executable_is_refused(self):
        archive, _ = self.archive("jessy-api", self.app("dyn", {"bin/jessy-api": elf(True)}))
        self.assertRefused(self.check("jessy-api", archive), "program interpreter")

    def test_a_shell_is_refused(self):
        app = self.app("sh", {"bin/jessy-api": elf(False), "bin/sh": elf(False)})
        archive, _ = self.archive("jessy-api", app)
        self.assertRefused(self.check("jessy-api", archive), "a shell")

    def test_a_configuration_unlike_the_description_is_refused(self):
        spec = json.loads(SPEC.read_text())
        spec["user"]["uid"] = 0
        other = self.tmp / "images.json"
        other.write_text(json.dumps(spec))
        archive, _ = self.archive("jessy-core", self.app("root", {"bin/jessy-core": elf(False)}), other)
        self.assertRefused(self.check("jessy-core", archive), "does not match")

    def test_layers_over_the_limit_are_refused(self):
        big = elf(False) + os.urandom(6_100_000)
        archive, _ = self.archive("jessy-core", self.app("big", {"bin/jessy-core": big}))
        self.assertRefused(self.check("jessy-core", archive), "more than the 6000000")

    def test_the_same_inputs_give_the_same_image_id(self):
        files = {"bin/jessy-core": elf(False)}
        _, first = self.archive("jessy-core", self.app("same", files))
        _, second = self.archive("jessy-core", self.app("same", files))
        self.assertEqual(first, second)


if __name__ == "__main__":
    for tool in ("skopeo", "jq", "tar"):
        if not shutil.which(tool):
            print(f"test_image_scripts: {tool} not found (scripts/provision.sh test installs it)")
            sys.exit(1)
    result = unittest.main(exit=False, verbosity=2).result
    ran, bad = result.testsRun, len(result.failures) + len(result.errors)
    print(f"image scripts: {ran - bad} passed, {bad} failed")
    sys.exit(1 if bad or ran == 0 else 0)
