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

  crate = import ./packages.nix {
    inherit lib pkgs craneLib;
    inherit (toolchain) muslTarget;
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

  checks =
    import ./checks.nix {
      inherit
        lib
        pkgs
        craneLib
        advisory-db
        crate
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
    inherit pkgs craneLib checks;
    skopeo = n2c.skopeo-nix2container;
  };

  # `nix fmt`: nixfmt (RFC 166 style) over the whole tree, through treefmt.
  formatter = pkgs.nixfmt-tree;
}
