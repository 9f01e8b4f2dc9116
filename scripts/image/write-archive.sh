#!/usr/bin/env bash
# Write one image as a `docker load`-able archive with skopeo, named
# NAME:TAG. The flake calls it with nix2container's skopeo on `nix:<image
# JSON>` (nix/images.nix); machines without Nix call it with Debian's skopeo
# on the `oci:` layout scripts/image/oci-layout.py wrote. Both are the same
# containers/image docker-archive writer.
#
# Usage: write-archive.sh SOURCE-REFERENCE OUT.tar NAME TAG
# Needs: skopeo.
set -euo pipefail

[ $# -eq 4 ] || { echo "usage: $0 SOURCE-REFERENCE OUT.tar NAME TAG" >&2; exit 2; }
source_ref=$1 out=$2 name=$3 tag=$4

tmp=$(mktemp -d "${TMPDIR:-/tmp}/write-archive.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# skopeo wants a writable HOME; the Nix sandbox's is /homeless-shelter.
[ -w "${HOME:-/nonexistent}" ] || export HOME=$tmp

rm -f "$out"
skopeo --insecure-policy --tmpdir "$tmp" copy --quiet \
  "$source_ref" "docker-archive:$out:$name:$tag"
