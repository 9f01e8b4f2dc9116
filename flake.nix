{
  description = "jessy-core (query service) and jessy-api (its gateway): crane, nix2container";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";
    # crane has no inputs of its own: nothing to follow.
    crane.url = "github:ipetkov/crane";
    # No `follows`: nix2container patches skopeo's vendored sources and pins
    # its vendorHash against the nixpkgs of its own flake.lock, the only one
    # its upstream tests; a nixpkgs skopeo bump broke them before. Its
    # nixpkgs builds only skopeo and nix2container-bin (flake.lock: nixpkgs_2).
    nix2container.url = "github:nlewo/nix2container";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    # Read by the cargo-audit check; bumped by `nix flake update`.
    advisory-db = {
      url = "github:rustsec/advisory-db";
      flake = false;
    };
  };

  outputs =
    { nixpkgs, ... }@inputs:
    let
      # Images are built on Linux only; packages, checks and the shell also
      # on Apple silicon.
      systems = [
        "x86_64-linux"
        "aarch64-linux"
        "aarch64-darwin"
      ];
      perSystem = nixpkgs.lib.genAttrs systems (
        system: import ./nix (inputs // { inherit system; })
      );
      fromEachSystem = output: nixpkgs.lib.mapAttrs (_: outputs: outputs.${output}) perSystem;
    in
    {
      packages = fromEachSystem "packages";
      checks = fromEachSystem "checks";
      apps = fromEachSystem "apps";
      devShells = fromEachSystem "devShells";
      formatter = fromEachSystem "formatter";
    };
}
