#!/usr/bin/env bash
# The release images without Nix, as the flake builds them: the static musl
# binaries of scripts/build-binaries.sh, laid out as nix2container lays them
# (scripts/image/oci-layout.py, from deploy/images.json), written as a
# docker-archive by skopeo (scripts/image/write-archive.sh), checked by the
# flake's own archive check (scripts/image/check-archive.sh) and given to
# `docker load`, as a Nix user does with `docker load < result`.
# The same commit gives the same image ids, so a rebuild leaves nothing
# dangling.
#
# Usage: scripts/build-images.sh [--test] [--no-cargo] [--no-load]
#   --test       also the jessy-test image (the BDD suite; the e2e suite uses it)
#   --no-cargo   take the binaries already in target/ship (or $JESSY_SHIP_DIR)
#   --no-load    write and check the archives only (target/images/*.tar)
# Environment: JESSY_IMAGE_TAG (default: "tag" of images.json) is not
# supported on purpose: the archives are named as the flake names them.
# SOURCE_DATE_EPOCH (default: the HEAD commit's time) gives the "created"
# date, as self.lastModified does in the flake.
# Needs: what build-binaries.sh needs, python3, skopeo, jq, GNU tar, docker.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
die() { echo "build-images: $*" >&2; exit 1; }

images=(jessy-core jessy-api) cargo=1 load=1
while [ $# -gt 0 ]; do
  case "$1" in
    --test) images+=(jessy-test); shift ;;
    --no-cargo) cargo=0; shift ;;
    --no-load) load=0; shift ;;
    -h | --help) sed -n '2,21p' "$0"; exit 0 ;;
    *) die "unknown argument: $1" ;;
  esac
done
for tool in python3 skopeo jq tar; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/provision.sh installs it)"
done
if [ "$load" = 1 ]; then
  docker info >/dev/null 2>&1 || die "cannot talk to the Docker daemon (is it running, and may this user use it?)"
fi

spec=deploy/images.json
ship=${JESSY_SHIP_DIR:-$ROOT/target/ship}
archives=$ROOT/target/images
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || die "missing $ca_bundle: apt-get install ca-certificates"

# The revision and date the flake would stamp (self.rev, self.lastModified).
JESSY_GIT_REVISION=$(bash scripts/revision.sh)
export JESSY_GIT_REVISION
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
version=$(cargo metadata --no-deps --format-version 1 --offline 2>/dev/null |
  jq -r '.packages[] | select(.name == "jessy") | .version') || true
[ -n "$version" ] || die "cannot read the crate version (cargo metadata)"
tag=$(jq -r .tag "$spec")

if [ "$cargo" = 1 ]; then
  bdd=()
  [[ " ${images[*]} " == *" jessy-test "* ]] && bdd=(--with-bdd)
  bash scripts/build-binaries.sh --out "$ship" "${bdd[@]}"
fi

mkdir -p "$archives"
work=$(mktemp -d "${TMPDIR:-/tmp}/build-images.XXXXXX")
trap 'rm -rf "$work"' EXIT
for name in "${images[@]}"; do
  app=$ship/$name
  [ -d "$app" ] || die "$app missing: run scripts/build-binaries.sh${name/#jessy-test/ --with-bdd}"
  [ "$name" != jessy-test ] || [ -x "$app/bin/jessy-bdd" ] || die "$app holds no bin/jessy-bdd"
  python3 scripts/image/oci-layout.py --spec "$spec" --name "$name" --app "$app" \
    --ca-bundle "$ca_bundle" --version "$version" --revision "$JESSY_GIT_REVISION" \
    --created "$created" --out "$work/$name"
  archive=$archives/$name.tar
  bash scripts/image/write-archive.sh "oci:$work/$name:$tag" "$archive" "$name" "$tag"
  bash scripts/image/check-archive.sh --spec "$spec" --name "$name" --version "$version" \
    --revision "$JESSY_GIT_REVISION" --created "$created" "$archive"
  if [ "$load" = 1 ]; then
    previous=$(docker image inspect --format '{{.Id}}' "$name:$tag" 2>/dev/null || true)
    docker load -q -i "$archive"
    # The image this one replaced (another commit's) would stay behind
    # untagged: remove it, unless a container still uses it.
    current=$(docker image inspect --format '{{.Id}}' "$name:$tag")
    if [ -n "$previous" ] && [ "$previous" != "$current" ] &&
      [ "$(docker image inspect --format '{{len .RepoTags}}' "$previous" 2>/dev/null)" = 0 ]; then
      docker image rm "$previous" >/dev/null 2>&1 ||
        echo "build-images: the previous $name image ${previous:7:12} is still used by a container; kept" >&2
    fi
  fi
done
if [ "$load" = 1 ]; then
  docker image ls --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}' |
    awk 'NR == 1 || /^jessy-(core|api|test):/'
fi
