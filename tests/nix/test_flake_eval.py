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
with open(os.path.join(ROOT, "deploy", "build.json"), encoding="utf-8") as _fh:
    BUILD = json.load(_fh)
# deploy/build.json's cargo arguments and features, as the non-Nix path
# builds them too.
CARGO_FLAGS = " ".join(BUILD["cargoArgs"] + ["--features", ",".join(BUILD["features"])])
assert CARGO_FLAGS == "--locked --features otel", CARGO_FLAGS
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
                for tool in ("cargo-nextest", "cargo-watch", "cargo-deny",
                             "docker-compose", "nixfmt"):
                    self.assertIn(tool, out["devShell"])
                # nixpkgs marks cargo-llvm-cov broken off Linux: evaluating
                # it there throws, so the shell must not list it.
                if system in LINUX:
                    self.assertIn("cargo-llvm-cov", out["devShell"])
                else:
                    self.assertNotIn("cargo-llvm-cov", out["devShell"])
                # nix2container's skopeo (an overrideAttrs of nixpkgs' skopeo).
                self.assertTrue(any(p.startswith("skopeo") for p in out["devShell"]), out["devShell"])
                self.assertEqual(out["devShellChecks"], out["checks"])

    def test_checks(self):
        cargo = {"jessy-nextest", "jessy-clippy", "jessy-doc", "jessy-fmt", "jessy-audit",
                 "jessy-deny"}
        others = {"nix-deadnix", "jessy", "jessy-core", "jessy-api", "jessy-bdd"}
        # Linux only: coverage (cargo-llvm-cov), the auditable binaries, and
        # the contents checks, which build the archives, which build the
        # images: those two are not listed themselves.
        linux = {"jessy-coverage", "jessy-auditable", "jessy-core-image-contents",
                 "jessy-api-image-contents", "jessy-test-image-contents"}
        for system, out in flake()["perSystem"].items():
            with self.subTest(system=system):
                want = cargo | others | (linux if system in LINUX else set())
                self.assertEqual(set(out["checks"]), want)
                for name in ("jessy-core-image", "image", "image-api", "image-test"):
                    self.assertNotIn(name, out["checks"])

    def test_contents_checks_run_the_shared_script(self):
        f = flake()
        archives = {"jessy-core": "image", "jessy-api": "image-api", "jessy-test": "image-test"}
        self.assertEqual(f["contents"]["aarch64-darwin"], {})
        for system in LINUX:
            for name, attr in archives.items():
                with self.subTest(system=system, image=name):
                    c = f["contents"][system][f"{name}-image-contents"]
                    archive = f["archives"][system][attr]["name"]
                    self.assertRegex(
                        c["script"],
                        rf"^bash /nix/store/[a-z0-9]{{32}}-check-archive\.sh --spec "
                        rf"/nix/store/[a-z0-9]{{32}}-images\.json --name {name} --version {VERSION} "
                        rf"--revision 0123456789abcdef0123456789abcdef01234567 "
                        rf"--created {rfc3339(LAST_MODIFIED)} /nix/store/\S+-{archive}\n",
                    )
                    self.assertIn("jq", c["nativeBuildInputs"])
                    # The script replaces the inline check, whose RepoTags
                    # comparison missed skopeo's docker.io/library/ prefix.
                    self.assertNotIn("RepoTags", c["script"])

    def test_auditable_binaries(self):
        f = flake()
        for system, out in f["perSystem"].items():
            with self.subTest(system=system):
                jessy = out["crane"]["jessy"]
                deps = f["deps"][system]
                # The dependency build stays plain cargo, in crane's default
                # profile (release), the one the auditable command names.
                self.assertNotIn("cargoBuildCommand", deps)
                self.assertNotIn("CARGO_PROFILE", deps)
                self.assertNotIn("CARGO_PROFILE", jessy)
                if system in LINUX and BUILD["linux"]["auditable"]:
                    self.assertEqual(jessy["cargoBuildCommand"], "cargo auditable build --release")
                    self.assertIn("cargo-auditable", jessy["nativeBuildInputs"])
                    # cargo audit bin reads the embedded list back, against
                    # the pinned advisory database, by the shared script.
                    self.assertRegex(f["auditable"][system],
                                     r"bash /nix/store/\S+-audit-binaries\.sh \S+advisory-db\S* "
                                     r"/nix/store/\S+/bin/\*")
                    if "buildPhaseCargoCommand" in jessy:
                        self.assertIn(
                            "cargo auditable build --release --message-format json-render-diagnostics "
                            + CARGO_FLAGS,
                            jessy["buildPhaseCargoCommand"],
                        )
                else:
                    self.assertEqual(jessy["cargoBuildCommand"], "cargoWithProfile build")
                    self.assertNotIn("cargo-auditable", jessy["nativeBuildInputs"])
                    self.assertIsNone(f["auditable"][system])

    def test_musl_c_compiler(self):
        f = flake()
        for system, out in f["perSystem"].items():
            with self.subTest(system=system):
                cpu = system.split("-")[0]
                var = f"{cpu}_unknown_linux_musl"
                deps = f["deps"][system]
                if system not in LINUX:
                    self.assertFalse([k for k in deps if k.startswith(("CC_", "AR_"))])
                    continue
                self.assertRegex(deps[f"CC_{var}"], rf"^/nix/store/\S+/bin/{cpu}-unknown-linux-musl-cc$")
                self.assertRegex(deps[f"AR_{var}"], rf"^/nix/store/\S+/bin/{cpu}-unknown-linux-musl-ar$")
                # One commonArgs: the same compiler for the dependencies
                # and for every derivation that reuses their artifacts.
                for name in ("jessy", "jessy-bdd", "jessy-nextest", "jessy-clippy", "jessy-doc"):
                    for tool in ("CC", "AR"):
                        self.assertEqual(out["crane"][name][f"{tool}_{var}"], deps[f"{tool}_{var}"], name)

    def test_build_json_is_the_source_of_truth(self):
        f = flake()
        src = BUILD["source"]
        want = [{"dir": "", "keeps": sorted(src["extensions"], key=["rs", "toml"].index)}]
        want += [{"file": p} for p in src["files"]]
        want += [{"dir": d, "keeps": exts} for d, exts in src["extensionsUnder"].items()]
        self.assertEqual(f["source"], want)
        for system in LINUX:
            with self.subTest(system=system):
                deps = f["deps"][system]
                self.assertEqual(deps["CARGO_BUILD_TARGET"],
                                 BUILD["linux"]["target"].replace("{cpu}", system.split("-")[0]))
                self.assertEqual(deps["CARGO_BUILD_RUSTFLAGS"], BUILD["linux"]["rustflags"])

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
                for name in shared - {"jessy-bdd"} | ({"jessy-coverage"} & set(crane)):
                    c = crane[name]
                    self.assertEqual(c["cargoExtraArgs"], CARGO_FLAGS, name)
                # mkCargoDerivation does not read cargoExtraArgs: the flags
                # are in jessy-bdd's command (test_bdd_executable).
                self.assertNotIn("cargoExtraArgs", crane["jessy-bdd"])
                for name in shared | ({"jessy-coverage"} & set(crane)):
                    c = crane[name]
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
                self.assertTrue(c["jessy-audit"]["advisory-db"].endswith("-advisory-db"))
                # Offline, the yanked check can only print errors (no index).
                self.assertEqual(c["jessy-audit"]["cargoAuditExtraArgs"], "--no-yanked")
                if system not in LINUX:
                    self.assertNotIn("jessy-coverage", c, "cargo-llvm-cov is broken off Linux")
                    continue
                cov = c["jessy-coverage"]
                self.assertTrue(cov["withLlvmCov"])
                self.assertIn("--fail-under-lines 80", cov["cargoLlvmCovExtraArgs"])
                self.assertEqual(cov["CARGO_PROFILE"], "")
                if REAL and "checkPhaseCargoCommand" in cov:
                    self.assertIn("cargo llvm-cov nextest --lcov", cov["checkPhaseCargoCommand"])
                    self.assertIn(CARGO_FLAGS, c["jessy-nextest"]["checkPhaseCargoCommand"])
                    self.assertIn("cargo audit -n -d", c["jessy-audit"]["buildPhaseCargoCommand"])
                    self.assertIn("--no-yanked", c["jessy-audit"]["buildPhaseCargoCommand"])
                    self.assertIn("deny  check bans licenses sources", c["jessy-deny"]["buildPhaseCargoCommand"])

    def test_bdd_executable(self):
        for system, bdd in flake()["bdd"].items():
            with self.subTest(system=system):
                self.assertIn(f"cargoWithProfile test {CARGO_FLAGS} --no-run --test bdd",
                              bdd["buildPhaseCargoCommand"])
                self.assertRegex(
                    bdd["install"],
                    r'^bash /nix/store/[a-z0-9]{32}-install-bdd\.sh "\$cargoBuildLog" tests/features "\$out"\n$',
                )
                self.assertIn("jq", bdd["nativeBuildInputs"])
                # cargo-auditable leaves libtest executables as they are.
                self.assertNotIn("cargo-auditable", bdd["nativeBuildInputs"])

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
                    # Store files are 0555; check-archive.sh wants 0755.
                    self.assertEqual(img["perms"], [{"path": img["copyToRoot"][0], "regex": "/bin/[^/]+$",
                                                     "mode": "0755"}])
                    self.assertEqual(len(img["passthru"]), 3)

    def test_archives_are_docker_archives(self):
        f = flake()
        names = {"image": "jessy-core", "image-api": "jessy-api", "image-test": "jessy-test"}
        for system in LINUX:
            for attr, name in names.items():
                with self.subTest(system=system, archive=attr):
                    a = f["archives"][system][attr]
                    json_path = f["images"][system][f"{name}-image"]["json"]
                    self.assertRegex(
                        a["script"],
                        rf"^bash /nix/store/[a-z0-9]{{32}}-write-archive\.sh nix:{re.escape(json_path)} "
                        rf"/[a-z0-9]{{52}} {name} latest\n$",
                    )

    def test_nix2container_keeps_its_own_nixpkgs(self):
        # Its skopeo patch and vendorHash are tested only against its own lock.
        inputs = flake()["inputs"]
        self.assertNotIn("inputs", inputs["nix2container"])
        self.assertEqual(inputs["rust-overlay"]["inputs"], {"nixpkgs": {"follows": "nixpkgs"}})

    def test_dirty_tree_revision(self):
        img = flake(dirty=True)["images"]["x86_64-linux"]["jessy-core-image"]
        self.assertEqual(img["config"]["Labels"]["org.opencontainers.image.revision"], "dirty")
        self.assertEqual(flake(dirty=True)["perSystem"]["x86_64-linux"]["crane"]["jessy"]
                         ["JESSY_GIT_REVISION"], "dirty")

    def test_binaries_report_the_images_revision(self):
        # jessy_build_info and /health report JESSY_GIT_REVISION; the e2e
        # suite compares it with the image label. Set on the package only, so
        # a new commit does not rebuild the dependencies.
        f = flake()
        for system in LINUX:
            with self.subTest(system=system):
                label = f["images"][system]["jessy-core-image"]["config"]["Labels"][
                    "org.opencontainers.image.revision"]
                self.assertNotEqual(label, "dirty")
                self.assertEqual(f["perSystem"][system]["crane"]["jessy"]["JESSY_GIT_REVISION"], label)
                self.assertNotIn("JESSY_GIT_REVISION", f["deps"][system])


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
