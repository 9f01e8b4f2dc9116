# The release images (Linux only), built with nix2container from the same
# description as the non-Nix builder (deploy/images.json), so they cannot drift.
{
  self,
  lib,
  pkgs,
  n2c,
  crate,
}:
let
  spec = lib.importJSON ../deploy/images.json;
  inherit (n2c) nix2container skopeo-nix2container;

  created = import ./rfc3339.nix (self.lastModified or 0);
  revision = self.rev or "dirty";
  user = "${toString spec.user.uid}:${toString spec.user.gid}";

  # passwd, group and the CA bundle as plain files (copied, not linked), so
  # this layer holds no store path.
  rootfs =
    pkgs.runCommand "jessy-rootfs"
      {
        inherit (spec) passwd group;
        passAsFile = [
          "passwd"
          "group"
        ];
        allowedReferences = [ ];
      }
      ''
        mkdir -p $out/etc/ssl/certs
        cp $passwdPath $out/etc/passwd
        cp $groupPath $out/etc/group
        cp ${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt $out/etc/ssl/certs/ca-certificates.crt
      '';
  # On its own so the 1777 mode below matches nothing else.
  tmp = pkgs.runCommand "jessy-tmp" { } "mkdir -p $out/tmp";

  # Shared by the three images and rarely changed: a code change re-pushes
  # only the small application layer on top of it.
  baseLayer = nix2container.buildLayer {
    copyToRoot = [
      rootfs
      tmp
    ];
    perms = [
      {
        path = tmp;
        regex = ".*";
        mode = "1777";
      }
    ];
  };

  # `app` holds bin/<binary> (and share/ for the BDD suite); copyToRoot puts
  # it at /, in the image's own (top) layer. The binaries are static, so
  # nothing else comes along.
  mkImage =
    name: app:
    let
      image = spec.images.${name};
    in
    nix2container.buildImage {
      inherit name created;
      inherit (spec) tag;
      layers = [ baseLayer ];
      copyToRoot = [ app ];
      # Store files are read-only (0555); the description (and
      # scripts/image/check-archive.sh) wants the executable 0755.
      perms = [
        {
          path = app;
          regex = "/bin/[^/]+$";
          mode = "0755";
        }
      ];
      # nix2container decodes this into the OCI ImageConfig, which has no
      # Healthcheck field: the healthcheck lives in docker-compose.yml.
      config = {
        Entrypoint = [ "/bin/${image.binary}" ];
        User = user;
        Env = lib.mapAttrsToList (k: v: "${k}=${v}") image.env;
        Labels = spec.labels // {
          "org.opencontainers.image.title" = name;
          "org.opencontainers.image.description" = image.description;
          "org.opencontainers.image.version" = crate.version;
          "org.opencontainers.image.revision" = revision;
          "org.opencontainers.image.created" = created;
        };
      }
      // lib.optionalAttrs (image ? port) {
        ExposedPorts."${toString image.port}/tcp" = { };
      };
    };

  # `nix build` of a nix2container image gives a JSON manifest, not a
  # tarball: write a `docker load`-able archive with the patched skopeo (it
  # knows the `nix:` transport), through the script machines without Nix run.
  toArchive =
    image:
    let
      args = lib.escapeShellArgs [
        "nix:${image}"
        (placeholder "out")
        image.imageName
        image.imageTag
      ];
    in
    pkgs.runCommand "${image.imageName}-${image.imageTag}.tar"
      {
        nativeBuildInputs = [ skopeo-nix2container ];
        # `nix run .#image.copyToDockerDaemon` works on the archive too.
        passthru = {
          inherit (image)
            imageName
            imageTag
            copyToDockerDaemon
            copyToRegistry
            copyTo
            ;
        };
      }
      ''
        bash ${../scripts/image/write-archive.sh} ${args}
      '';

  # What the archive really contains (name, configuration, files and modes,
  # a static binary, no shell, no store path, the size budget), checked
  # against deploy/images.json by the script that also checks the archives
  # machines without Nix build.
  checkArchive =
    name: archive:
    let
      args = lib.escapeShellArgs [
        "--spec"
        "${../deploy/images.json}"
        "--name"
        name
        "--version"
        crate.version
        "--revision"
        revision
        "--created"
        created
        "${archive}"
      ];
    in
    pkgs.runCommand "${name}-image-contents" { nativeBuildInputs = [ pkgs.jq ]; } ''
      bash ${../scripts/image/check-archive.sh} ${args}
      touch $out
    '';

  images = {
    jessy-core-image = mkImage "jessy-core" crate.jessy-core;
    jessy-api-image = mkImage "jessy-api" crate.jessy-api;
    jessy-test-image = mkImage "jessy-test" crate.jessy-bdd;
  };
  archives = {
    image = toArchive images.jessy-core-image;
    image-api = toArchive images.jessy-api-image;
    image-test = toArchive images.jessy-test-image;
  };
in
{
  packages = images // archives;
  # Each builds its archive, which builds its image.
  checks = {
    jessy-core-image-contents = checkArchive "jessy-core" archives.image;
    jessy-api-image-contents = checkArchive "jessy-api" archives.image-api;
    jessy-test-image-contents = checkArchive "jessy-test" archives.image-test;
  };
}
