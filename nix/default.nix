# All outputs of one system; flake.nix only distributes them.
{
  self,
  nixpkgs,
  crane,
  nix2container,
  rust-overlay,
  advisory-db,
  system,
}:
let
  pkgs = nixpkgs.legacyPackages.${system};
  inherit (pkgs) lib;
  n2c = nix2container.packages.${system};

  toolchain = import ./toolchain.nix { inherit lib rust-overlay; };
  craneLib = (crane.mkLib pkgs).overrideToolchain toolchain.forPkgs;

  # cargo-llvm-cov is marked broken off Linux (nixpkgs
  # pkgs/by-name/ca/cargo-llvm-cov/package.nix: the profiler runtime is
  # disabled there), so the coverage check and the tool exist only where
  # nixpkgs says they work.
  usable = pkg: lib.meta.availableOn pkgs.stdenv.hostPlatform pkg && !(pkg.meta.broken or false);
  withCoverage = usable pkgs.cargo-llvm-cov;

  crate = import ./packages.nix {
    inherit lib pkgs craneLib;
    inherit (toolchain) muslTarget;
    # Reported by the binaries (/health, jessy_build_info) and stamped on the
    # images (org.opencontainers.image.revision): the same value.
    revision = self.rev or "dirty";
  };

  # Container images are Linux-only (a Darwin build would hold Darwin binaries).
  images = lib.optionalAttrs pkgs.stdenv.hostPlatform.isLinux (
    import ./images.nix {
      inherit
        self
        lib
        pkgs
        n2c
        crate
        ;
    }
  );

  # The image contents checks build the archives, which build the images:
  # those are not listed on their own.
  checks =
    import ./checks.nix {
      inherit
        lib
        pkgs
        craneLib
        advisory-db
        crate
        withCoverage
        ;
    }
    // images.checks or { };

  app = name: description: {
    type = "app";
    program = lib.getExe crate.${name};
    meta = { inherit description; };
  };
in
{
  inherit checks;

  packages = {
    inherit (crate)
      jessy
      jessy-core
      jessy-api
      jessy-bdd
      ;
    default = crate.jessy;
  }
  // images.packages or { };

  apps = {
    jessy-core = app "jessy-core" "jessy-core: the query service (port 8080)";
    jessy-api = app "jessy-api" "jessy-api: the public gateway (port 3000)";
  };

  devShells.default = import ./shells.nix {
    inherit
      lib
      pkgs
      craneLib
      checks
      withCoverage
      ;
    skopeo = n2c.skopeo-nix2container;
  };

  # `nix fmt`: nixfmt (RFC 166 style) over the whole tree, through treefmt.
  formatter = pkgs.nixfmt-tree;
}
