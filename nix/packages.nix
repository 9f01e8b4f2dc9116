# The crate: the one dependency build and the packages, with the flags
# deploy/build.json gives (features, cargo arguments, the Linux musl target,
# its rustflags, cargo-auditable).
{
  lib,
  pkgs,
  craneLib,
  muslTarget,
  revision,
}:
let
  build = lib.importJSON ../deploy/build.json;
  inherit (pkgs.stdenv) hostPlatform;

  src = import ./source.nix { inherit lib; };
  inherit (craneLib.crateNameFromCargoToml { inherit src; }) pname version;

  # Native build settings; the coverage check uses these as they are. The
  # same flags everywhere, so that one dependency build serves every
  # derivation.
  nativeArgs = {
    inherit src pname version;
    strictDeps = true;
    cargoExtraArgs = lib.concatStringsSep " " (
      build.cargoArgs ++ [ "--features ${lib.concatStringsSep "," build.features}" ]
    );
  };

  # On Linux everything is built as static musl executables: the images then
  # need no libc closure at all (no /nix/store in them).
  target = muslTarget hostPlatform;
  # C code built by the cc crate (libmimalloc-sys on musl) needs a C compiler
  # for the musl target; cc-rs reads CC_<target> and AR_<target>. The same
  # full paths crane sets for real cross builds (crane lib/mkCrossToolchainEnv.nix);
  # pkgsStatic's compiler targets <cpu>-unknown-linux-musl and carries that
  # prefix (nixpkgs pkgs/top-level/stage.nix pkgsStatic, cc-wrapper targetPrefix;
  # cc-wrapper links its bintools, so <prefix>ar, into the same bin/).
  muslCC = pkgs.pkgsStatic.stdenv.cc;
  ccVar = tool: "${tool}_${builtins.replaceStrings [ "-" ] [ "_" ] target}";
  linuxArgs = {
    CARGO_BUILD_TARGET = target;
    CARGO_BUILD_RUSTFLAGS = build.linux.rustflags;
    ${ccVar "CC"} = "${muslCC}/bin/${muslCC.targetPrefix}cc";
    ${ccVar "AR"} = "${muslCC}/bin/${muslCC.targetPrefix}ar";
  };
  commonArgs = nativeArgs // lib.optionalAttrs hostPlatform.isLinux linuxArgs;

  # `cargo auditable build` embeds the crate list in the binaries. Not with
  # crane's cargoWithProfile: that puts --release right after its first word
  # (crane lib/setupHooks/cargoHelperFunctionsHook.sh), i.e. between
  # `auditable` and `build`, where cargo rejects it. Release is crane's
  # default CARGO_PROFILE, so the dependency build's profile is the same.
  auditable = hostPlatform.isLinux && build.linux.auditable;

  # Built once, shared by the packages and every cargo check. Plain cargo:
  # cargo-auditable wraps only the workspace crates' rustc
  # (RUSTC_WORKSPACE_WRAPPER), so the dependencies' artifacts stay valid.
  cargoArtifacts = craneLib.buildDepsOnly commonArgs;

  # Both binaries in one cargo build; the tests run in the nextest check.
  jessy = craneLib.buildPackage (
    commonArgs
    // {
      inherit cargoArtifacts;
      cargoBuildCommand =
        if auditable then "cargo auditable build --release" else "cargoWithProfile build";
      # Only here, not in commonArgs: a new commit must not rebuild the
      # dependencies (src/lib.rs reads it with option_env!).
      JESSY_GIT_REVISION = revision;
      nativeBuildInputs = lib.optional auditable pkgs.cargo-auditable;
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
  # cargo reports in its JSON messages, plus the feature files. Plain cargo:
  # cargo-auditable embeds its section in binaries, not in libtest
  # executables (`cargo auditable test --no-run` leaves no .dep-v0).
  jessy-bdd = craneLib.mkCargoDerivation (
    builtins.removeAttrs commonArgs [ "cargoExtraArgs" ]
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
        bash ${../scripts/image/install-bdd.sh} "$cargoBuildLog" tests/features "$out"
      '';
      # buildPackage adds these hooks itself; without them panic locations
      # keep the vendored sources and the toolchain in the closure.
      nativeBuildInputs = [
        pkgs.jq
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
    auditable
    nativeArgs
    commonArgs
    cargoArtifacts
    jessy
    jessy-bdd
    ;
  jessy-core = onlyBin "jessy-core";
  jessy-api = onlyBin "jessy-api";
}
