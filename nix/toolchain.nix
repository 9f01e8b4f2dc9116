# The Rust toolchain. rust-toolchain.toml is the one source of truth (rustup
# reads it too); Nix only adds what only Nix builds need.
{ lib, rust-overlay }:
let
  file = ../rust-toolchain.toml;
  fromFile = (lib.importTOML file).toolchain;
  build = lib.importJSON ../deploy/build.json;

  # Static musl triple of a Linux platform, from deploy/build.json's
  # "{cpu}-unknown-linux-musl"; the images ship these binaries.
  muslTarget =
    platform: builtins.replaceStrings [ "{cpu}" ] [ platform.parsed.cpu.name ] build.linux.target;
in
{
  inherit muslTarget;

  # A function of the package set, so crane can splice it (crane docs/API.md,
  # overrideToolchain).
  forPkgs =
    p:
    ((rust-overlay.lib.mkRustBin { } p).fromRustupToolchainFile file).override {
      # `override` replaces the lists read from the file, so start from them.
      # llvm-tools: cargo-llvm-cov (coverage check).
      extensions = (fromFile.components or [ ]) ++ [ "llvm-tools-preview" ];
      targets =
        (fromFile.targets or [ ])
        ++ lib.optional p.stdenv.hostPlatform.isLinux (muslTarget p.stdenv.hostPlatform);
    };
}
