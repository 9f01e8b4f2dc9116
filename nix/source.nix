# The source the build sees, as deploy/build.json describes it ("source"):
# files with these extensions anywhere, these exact files, and these
# extensions below these directories. scripts/source-files.py reads the same
# description for machines without Nix.
{ lib }:
let
  root = ../.;
  inherit (lib.importJSON ../deploy/build.json) source;

  withExtensions = extensions: lib.fileset.fileFilter (file: lib.any file.hasExt extensions);
in
lib.fileset.toSource {
  inherit root;
  fileset = lib.fileset.unions (
    [ (withExtensions source.extensions root) ]
    ++ map (file: root + "/${file}") source.files
    ++ lib.mapAttrsToList (
      dir: extensions: withExtensions extensions (root + "/${dir}")
    ) source.extensionsUnder
  );
}
