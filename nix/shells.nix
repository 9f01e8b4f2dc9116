# `nix develop`: the Nix toolchain (rustc, cargo, clippy, rustfmt from
# rust-toolchain.toml), every check's inputs, and the day-to-day tools.
{
  lib,
  pkgs,
  craneLib,
  checks,
  withCoverage,
  skopeo,
}:
craneLib.devShell {
  inherit checks;
  packages = [
    pkgs.cargo-nextest
    pkgs.cargo-watch
    pkgs.cargo-deny
    pkgs.cargo-audit
    # nix2container's build: it knows the `nix:` transport (copy an image
    # JSON anywhere skopeo can write).
    skopeo
    pkgs.docker-compose
    pkgs.nixfmt
  ]
  # Linux only: nixpkgs marks it broken elsewhere (see nix/default.nix).
  ++ lib.optional withCoverage pkgs.cargo-llvm-cov;
}
