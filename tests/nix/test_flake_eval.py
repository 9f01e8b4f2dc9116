#!/usr/bin/env python3
"""Evaluates the flake with Nix alone (tests/nix/eval.nix: stub nixpkgs, crane,
rust-overlay and nix2container with the pinned signatures) and checks what it
would build: outputs per system, one dependency build shared with the same
cargo flags, the checks' commands, and the image configurations against
deploy/images.json. Also checks nix/rfc3339.nix against Python's datetime.

Needs nix-instantiate (Debian: apt-get install nix-bin); skipped without it.
With CRANE_SRC / N2C_SRC pointing at checkouts of the pinned crane and
nix2container revisions, the real builder files are evaluated as well.

Run: python3 tests/nix/test_flake_eval.py   (exit status 1 on any failure)
"""

import datetime
import json
import os
import random
import re
import shutil
import subprocess
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
EVAL = os.path.join(ROOT, "tests", "nix", "eval.nix")
LINUX = ["aarch64-linux", "x86_64-linux"]
SYSTEMS = ["aarch64-darwin"] + LINUX
CARGO_FLAGS = "--locked --features otel"
LAST_MODIFIED = 1785782307  # selfStub.lastModified in eval.nix
REAL = bool(os.environ.get("CRANE_SRC")) or bool(os.environ.get("N2C_SRC"))


def crate_version():
    with open(os.path.join(ROOT, "Cargo.toml"), encoding="utf-8") as fh:
        package = fh.read().split("[package]", 1)[1]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


VERSION = crate_version()


def nix_eval(expr):
    out = subprocess.run(
        ["nix-instantiate", "--eval", "--strict", "--json", "-E", expr],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise AssertionError(f"nix-instantiate failed:\n{out.stderr}")
    return json.loads(out.stdout)


_cache = {}


def flake(dirty=False):
    if dirty not in _cache:
        _cache[dirty] = nix_eval(f"import {EVAL} {{ dirty = {'true' if dirty else 'false'}; }}")
    return _cache[dirty]


def rfc3339(t):
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@unittest.skipUnless(shutil.which("nix-instantiate"), "nix-instantiate not installed (apt-get install nix-bin)")
class FlakeOutputs(unittest.TestCase):
    def test_systems_and_outputs(self):
        f = flake()
        self.assertEqual(f["systems"], SYSTEMS)
        base = {"default", "jessy", "jessy-core", "jessy-api", "jessy-bdd"}
        images = {"jessy-core-image", "jessy-api-image", "jessy-test-image", "image", "image-api", "image-test"}
        for system, out in f["perSystem"].items():
            with self.subTest(system=system):
                want = base | (images if system in LINUX else set())
                self.assertEqual(set(out["packages"]), want)
                self.assertEqual(set(out["apps"]), {"jessy-core", "jessy-api"})
                for name, app in out["apps"].items():
                    self.assertEqual(app["type"], "app")
                    self.assertTrue(app["program"].endswith(f"-{name}-{VERSION}/bin/{name}"), app)
                self.assertEqual(out["formatter"], "treefmt")
                for tool in ("cargo-nextest", "cargo-watch", "cargo-llvm-cov", "cargo-deny",
                             "docker-compose", "nixfmt"):
                    self.assertIn(tool, out["devShell"])
                # nix2container's skopeo (an overrideAttrs of nixpkgs' skopeo).
                self.assertTrue(any(p.startswith("skopeo") for p in out["devShell"]), out["devShell"])
                self.assertEqual(out["devShellChecks"], out["checks"])

    def test_checks(self):
        cargo = {"jessy-nextest", "jessy-coverage", "jessy-clippy", "jessy-doc", "jessy-fmt",
                 "jessy-audit", "jessy-deny"}
        others = {"nix-deadnix", "jessy", "jessy-core", "jessy-api", "jessy-bdd"}
        images = {"jessy-core-image", "jessy-api-image", "jessy-test-image", "image", "image-api",
                  "image-test", "jessy-core-image-contents", "jessy-api-image-contents",
                  "jessy-test-image-contents"}
        for system, out in flake()["perSystem"].items():
            with self.subTest(system=system):
                want = cargo | others | (images if system in LINUX else set())
                self.assertEqual(set(out["checks"]), want)

    def test_toolchain(self):
        for system, out in flake()["perSystem"].items():
            with self.subTest(system=system):
                tc = out["toolchain"]
                # From rust-toolchain.toml, plus llvm-tools for coverage.
                self.assertEqual(tc["extensions"], ["clippy", "rustfmt", "llvm-tools-preview"])
                musl = [f"{system.split('-')[0]}-unknown-linux-musl"] if system in LINUX else []
                self.assertEqual(tc["targets"], musl)

    def test_one_dependency_build_same_flags(self):
        f = flake()
        for system, out in f["perSystem"].items():
            with self.subTest(system=system):
                deps = f["deps"][system]
                self.assertEqual(deps["builder"], "buildDepsOnly")
                self.assertEqual(deps["cargoExtraArgs"], CARGO_FLAGS)
                crane = out["crane"]
                shared = {"jessy", "jessy-bdd", "jessy-nextest", "jessy-clippy", "jessy-doc"}
                artifacts = {crane[n]["cargoArtifacts"] for n in shared}
                self.assertEqual(len(artifacts), 1, f"more than one dependency build: {artifacts}")
                for name in shared | {"jessy-coverage"}:
                    c = crane[name]
                    self.assertEqual(c["cargoExtraArgs"], CARGO_FLAGS, name)
                    for key in ("CARGO_BUILD_TARGET", "CARGO_BUILD_RUSTFLAGS"):
                        if name == "jessy-coverage":
                            self.assertNotIn(key, c, "coverage runs natively")
                        else:
                            self.assertEqual(c.get(key), deps.get(key), f"{name}: {key}")
                if system in LINUX:
                    self.assertEqual(deps["CARGO_BUILD_TARGET"], f"{system.split('-')[0]}-unknown-linux-musl")
                    self.assertEqual(deps["CARGO_BUILD_RUSTFLAGS"], "-C target-feature=+crt-static")
                else:
                    self.assertNotIn("CARGO_BUILD_TARGET", deps)

    def test_check_settings(self):
        for system, out in flake()["perSystem"].items():
            with self.subTest(system=system):
                c = out["crane"]
                self.assertFalse(c["jessy"]["doCheck"], "tests run once, in jessy-nextest")
                self.assertEqual(c["jessy-clippy"]["cargoClippyExtraArgs"], "--all-targets -- --deny warnings")
                self.assertEqual(c["jessy-doc"]["env"], {"RUSTDOCFLAGS": "--deny warnings"})
                cov = c["jessy-coverage"]
                self.assertTrue(cov["withLlvmCov"])
                self.assertIn("--fail-under-lines 80", cov["cargoLlvmCovExtraArgs"])
                self.assertEqual(cov["CARGO_PROFILE"], "")
                self.assertTrue(c["jessy-audit"]["advisory-db"].endswith("-advisory-db"))
                if REAL and "checkPhaseCargoCommand" in cov:
                    self.assertIn("cargo llvm-cov nextest --lcov", cov["checkPhaseCargoCommand"])
                    self.assertIn(CARGO_FLAGS, c["jessy-nextest"]["checkPhaseCargoCommand"])
                    self.assertIn("cargo audit -n -d", c["jessy-audit"]["buildPhaseCargoCommand"])
                    self.assertIn("deny  check bans licenses sources", c["jessy-deny"]["buildPhaseCargoCommand"])

    def test_bdd_executable(self):
        for system, bdd in flake()["bdd"].items():
            with self.subTest(system=system):
                self.assertIn(f"cargoWithProfile test {CARGO_FLAGS} --no-run --test bdd", bdd["buildPhaseCargoCommand"])
                self.assertIn("$out/bin/jessy-bdd", bdd["install"])
                self.assertIn("$out/share/jessy/features", bdd["install"])

    def test_images_follow_images_json(self):
        with open(os.path.join(ROOT, "deploy", "images.json"), encoding="utf-8") as fh:
            spec = json.load(fh)
        f = flake()
        self.assertEqual(f["images"]["aarch64-darwin"], {})
        for system in LINUX:
            for name, desc in spec["images"].items():
                with self.subTest(system=system, image=name):
                    img = f["images"][system][f"{name}-image"]
                    self.assertEqual((img["imageName"], img["imageTag"]), (name, spec["tag"]))
                    self.assertEqual(img["created"], rfc3339(LAST_MODIFIED))
                    cfg = img["config"]
                    self.assertEqual(cfg["Entrypoint"], [f"/bin/{desc['binary']}"])
                    self.assertEqual(cfg["User"], f"{spec['user']['uid']}:{spec['user']['gid']}")
                    self.assertEqual(sorted(cfg["Env"]), sorted(f"{k}={v}" for k, v in desc["env"].items()))
                    if "port" in desc:
                        self.assertEqual(cfg["ExposedPorts"], {f"{desc['port']}/tcp": {}})
                    else:
                        self.assertNotIn("ExposedPorts", cfg)
                    self.assertNotIn("Healthcheck", cfg)
                    labels = dict(spec["labels"])
                    labels.update({
                        "org.opencontainers.image.title": name,
                        "org.opencontainers.image.description": desc["description"],
                        "org.opencontainers.image.version": VERSION,
                        "org.opencontainers.image.revision": "0123456789abcdef0123456789abcdef01234567",
                        "org.opencontainers.image.created": rfc3339(LAST_MODIFIED),
                    })
                    self.assertEqual(cfg["Labels"], labels)
                    # Base layer (passwd, group, CA bundle, /tmp 1777) under the
                    # image's own layer holding only its executable.
                    self.assertEqual(len(img["layers"]), 1)
                    self.assertEqual(img["layers"][0]["copyToRoot"], ["jessy-rootfs", "jessy-tmp"])
                    self.assertEqual(img["layers"][0]["perms"], [{"path": "jessy-tmp", "regex": ".*", "mode": "1777"}])
                    self.assertEqual(len(img["copyToRoot"]), 1)
                    self.assertEqual(len(img["passthru"]), 3)

    def test_archives_are_docker_archives(self):
        f = flake()
        names = {"image": "jessy-core", "image-api": "jessy-api", "image-test": "jessy-test"}
        for system in LINUX:
            for attr, name in names.items():
                with self.subTest(system=system, archive=attr):
                    a = f["archives"][system][attr]
                    json_path = f["images"][system][f"{name}-image"]["json"]
                    self.assertIn(f"copy \\\n  nix:{json_path} docker-archive:$out:{name}:latest", a["script"])
                    self.assertIn("skopeo --insecure-policy", a["script"])

    def test_dirty_tree_revision(self):
        img = flake(dirty=True)["images"]["x86_64-linux"]["jessy-core-image"]
        self.assertEqual(img["config"]["Labels"]["org.opencontainers.image.revision"], "dirty")


@unittest.skipUnless(shutil.which("nix-instantiate"), "nix-instantiate not installed (apt-get install nix-bin)")
class Rfc3339(unittest.TestCase):
    def test_against_datetime(self):
        rng = random.Random(3339)
        stamps = [0, 1, 59, 86399, 86400, 951782400, 951868800, 1709164800, LAST_MODIFIED,
                  4102444800, 253402300799] + [rng.randrange(0, 253402300800) for _ in range(2000)]
        got = nix_eval(f"map (import {ROOT}/nix/rfc3339.nix) [ {' '.join(map(str, stamps))} ]")
        self.assertEqual(got, [rfc3339(t) for t in stamps])


if __name__ == "__main__":
    unittest.main(verbosity=2)
