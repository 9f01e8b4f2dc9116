# The crate: filtered source, the one dependency build, and the packages.
{
  lib,
  pkgs,
  craneLib,
  muslTarget,
}:
let
  inherit (pkgs.stdenv.hostPlatform) isLinux;

  root = ../.;
  src = lib.fileset.toSource {
    inherit root;
    fileset = lib.fileset.unions [
      # *.rs, Cargo.lock and every *.toml: Cargo.toml, rust-toolchain.toml,
      # deny.toml (cargo-deny check), .config/nextest.toml (nextest check).
      (craneLib.fileset.commonCargoSources root)
      # include_str! in src/core/navigation/mod.rs
      ../src/core/navigation/dimensions.json
      # Read by the BDD suite at test run time, and shipped in jessy-test.
      (lib.fileset.fileFilter (file: file.hasExt "feature") ../tests)
    ];
  };

  inherit (craneLib.crateNameFromCargoToml { inherit src; }) pname version;

  # Native build settings; the coverage check uses these as they are.
  nativeArgs = {
    inherit src pname version;
    strictDeps = true;
    # The same flags everywhere, so that one dependency build serves every
    # derivation (releases ship with OpenTelemetry export compiled in).
    cargoExtraArgs = "--locked --features otel";
  };

  # On Linux everything is built as static musl executables: the images then
  # need no libc closure at all (no /nix/store in them).
  commonArgs =
    nativeArgs
    // lib.optionalAttrs isLinux {
      CARGO_BUILD_TARGET = muslTarget pkgs.stdenv.hostPlatform;
      CARGO_BUILD_RUSTFLAGS = "-C target-feature=+crt-static";
    };

  # Built once, shared by the packages and every cargo check.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # Both binaries in one cargo build; the tests run in the nextest check.
  jessy = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      doCheck = false;
      meta.mainProgram = "jessy-core";
    }
  );

  # One binary each (copied, not linked), so an image holds only its own.
  onlyBin =
    name:
    pkgs.runCommand "${name}-${version}"
      {
        meta.mainProgram = name;
      }
      ''
        install -Dm755 ${jessy}/bin/${name} $out/bin/${name}
      '';

  # The compiled BDD suite for the jessy-test image: the test executable
  # cargo reports in its JSON messages, plus the feature files.
  jessy-bdd = craneLib.mkCargoDerivation (
    commonArgs
    // {
      inherit cargoArtifacts;
      pnameSuffix = "-bdd";
      doCheck = false;
      doInstallCargoArtifacts = false;
      buildPhaseCargoCommand = ''
        cargoBuildLog=$(mktemp cargoBuildLogXXXX.json)
        cargoWithProfile test ${commonArgs.cargoExtraArgs} --no-run --test bdd \
          --message-format json-render-diagnostics >"$cargoBuildLog"
      '';
      installPhaseCommand = ''
        bdd=$(${lib.getExe pkgs.jq} -r 'select(.reason == "compiler-artifact"
          and .target.name == "bdd" and .target.kind == ["test"]) | .executable' "$cargoBuildLog")
        if [ ! -x "$bdd" ]; then
          echo "no single bdd test executable in $cargoBuildLog: '$bdd'" >&2
          exit 1
        fi
        install -Dm755 "$bdd" $out/bin/jessy-bdd
        mkdir -p $out/share/jessy
        cp -r tests/features $out/share/jessy/features
      '';
      # buildPackage adds these itself; without them panic locations keep
      # the vendored sources and the toolchain in the closure.
      nativeBuildInputs = [
        craneLib.removeReferencesToVendoredSourcesHook
        craneLib.removeReferencesToRustToolchainHook
      ];
      meta.mainProgram = "jessy-bdd";
    }
  );
in
{
  inherit
    src
    version
    nativeArgs
    commonArgs
    cargoArtifacts
    jessy
    jessy-bdd
    ;
  jessy-core = onlyBin "jessy-core";
  jessy-api = onlyBin "jessy-api";
}
