# Everything `nix flake check` runs. All inputs come from the flake inputs or
# nixpkgs: nothing reaches the network inside the sandbox.
{
  lib,
  pkgs,
  craneLib,
  advisory-db,
  crate,
  withCoverage,
}:
let
  inherit (crate) src commonArgs cargoArtifacts;
  inherit (commonArgs) pname version;

  # Checks nothing else builds on: skip packing target/ into $out.
  withDeps =
    args:
    commonArgs
    // {
      inherit cargoArtifacts;
      doInstallCargoArtifacts = false;
    }
    // args;

  nixSources = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.fileFilter (file: file.hasExt "nix") ../.;
  };
in
{
  inherit (crate)
    jessy
    jessy-core
    jessy-api
    jessy-bdd
    ;

  # Unit, integration and BDD tests (bdd is a plain libtest target), on the
  # target that ships (musl on Linux). The integration tests spawn the built
  # binaries on 127.0.0.1.
  jessy-nextest = craneLib.cargoNextest (withDeps {
    __darwinAllowLocalNetworking = true;
  });

  jessy-clippy = craneLib.cargoClippy (withDeps {
    # Replaces the default "--all-targets", so it is repeated here.
    cargoClippyExtraArgs = "--all-targets -- --deny warnings";
  });

  jessy-doc = craneLib.cargoDoc (withDeps {
    env.RUSTDOCFLAGS = "--deny warnings";
  });

  jessy-fmt = craneLib.cargoFmt { inherit src pname version; };

  # RustSec advisories from the pinned advisory-db input (`-n`: no fetch).
  # crane's default `--ignore yanked` names no advisory: the yanked check
  # still runs, cannot reach the registry index in the sandbox and prints an
  # error per crate (rehearsed in scripts/sandbox-checks.sh audit).
  jessy-audit = craneLib.cargoAudit {
    inherit
      src
      pname
      version
      advisory-db
      ;
    cargoAuditExtraArgs = "--no-yanked";
  };

  # Licenses, bans and sources from deny.toml (crane leaves advisories to
  # cargo-audit above, so deny.toml's db-path is not used here).
  jessy-deny = craneLib.cargoDeny { inherit src pname version; };

  nix-deadnix = pkgs.runCommand "jessy-deadnix" { nativeBuildInputs = [ pkgs.deadnix ]; } ''
    deadnix --no-lambda-pattern-names --fail ${nixSources}
    touch $out
  '';
}
// lib.optionalAttrs withCoverage {
  # Same tests, instrumented. cargo-llvm-cov rebuilds every crate with its
  # own flags and target dir, so the shared artifacts would not help; it
  # runs natively in the dev profile (the profiler runtime of the host
  # target, and no `strip`), as `cargo llvm-cov nextest` does with rustup.
  jessy-coverage = craneLib.cargoNextest (
    crate.nativeArgs
    // {
      cargoArtifacts = null;
      CARGO_PROFILE = "";
      withLlvmCov = true;
      cargoLlvmCovExtraArgs = "--lcov --output-path $out/lcov.info --fail-under-lines 80";
      doInstallCargoArtifacts = false;
      __darwinAllowLocalNetworking = true;
    }
  );
}
// lib.optionalAttrs crate.auditable {
  # cargo-auditable's crate list is in both shipped binaries, and cargo
  # audit bin reads it back against the pinned advisory database (what
  # Trivy and syft read in CI); the sandbox rehearsal runs the same script.
  jessy-auditable =
    pkgs.runCommand "jessy-auditable"
      {
        nativeBuildInputs = [
          pkgs.cargo-audit
          pkgs.jq
        ];
      }
      ''
        export HOME=$TMPDIR
        bash ${../scripts/audit-binaries.sh} ${advisory-db} ${crate.jessy}/bin/*
        touch $out
      '';
}
