#!/usr/bin/env bash
# What a release image archive really contains, checked against the one
# description of the images (deploy/images.json). The flake runs it on the
# archives nix2container's skopeo writes (nix/images.nix, the
# jessy-*-image-contents checks); machines without Nix run it on the archives
# scripts/build-images.sh writes. Same file, same assertions.
#
# Usage: check-archive.sh --spec images.json --name NAME --version VERSION \
#          --revision REV --created RFC3339 ARCHIVE.tar
# Needs: bash, jq, GNU tar, od, grep, coreutils.
set -euo pipefail

die() { echo "check-archive: $*" >&2; exit 1; }

spec= name= version= revision= created= archive=
while [ $# -gt 0 ]; do
  case "$1" in
    --spec) spec=$2; shift 2 ;;
    --name) name=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --revision) revision=$2; shift 2 ;;
    --created) created=$2; shift 2 ;;
    -*) die "unknown option $1" ;;
    *) archive=$1; shift ;;
  esac
done
for v in spec name version revision created archive; do
  [ -n "${!v}" ] || die "--$v is required (see the usage at the top of $0)"
done
[ -f "$archive" ] || die "no archive at $archive"
[ -f "$spec" ] || die "no description at $spec"
spec=$(realpath "$spec") archive=$(realpath "$archive")
jq -e --arg n "$name" '.images[$n]' "$spec" >/dev/null || die "$name is not in $spec"

work=$(mktemp -d "${TMPDIR:-/tmp}/check-archive.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xf "$archive" -C "$work"
cd "$work"

# skopeo's docker-archive writer stores the normalised reference
# (containers/image docker/archive: ParseNormalizedNamed, then Name():Tag);
# `docker load` shortens it again to NAME:TAG.
tag=$(jq -r .tag "$spec")
want_ref="docker.io/library/$name:$tag"
got_ref=$(jq -r '.[0].RepoTags[0]' manifest.json)
[ "$got_ref" = "$want_ref" ] || die "$name: RepoTags[0] is '$got_ref', expected '$want_ref'"
[ "$(jq length manifest.json)" = 1 ] || die "$name: the archive holds more than one image"

# The configuration, built from the description exactly as both builders must.
config=$(jq -r '.[0].Config' manifest.json)
jq -e --slurpfile spec "$spec" --arg name "$name" --arg version "$version" \
  --arg revision "$revision" --arg created "$created" '
  ($spec[0]) as $s | $s.images[$name] as $img |
  def want_labels: $s.labels + {
    "org.opencontainers.image.title": $name,
    "org.opencontainers.image.description": $img.description,
    "org.opencontainers.image.version": $version,
    "org.opencontainers.image.revision": $revision,
    "org.opencontainers.image.created": $created };
  def check(what; ok): if ok then true else error("\(what) differs from the description") end;
  check("User"; .config.User == "\($s.user.uid):\($s.user.gid)")
  and check("Entrypoint"; .config.Entrypoint == ["/bin/\($img.binary)"])
  and check("Env"; (.config.Env | sort) == ($img.env | to_entries | map("\(.key)=\(.value)") | sort))
  and check("Labels"; .config.Labels == want_labels)
  and check("ExposedPorts"; (.config.ExposedPorts // {}) ==
        (if $img.port then {"\($img.port)/tcp": {}} else {} end))
  and check("created"; .created == $created)
  and check("architecture"; .os == "linux")
' "$config" >/dev/null || die "$name: image configuration does not match $spec (see the error above)"

# Every file of every layer, with modes; and the total size.
: >listing
total=0
for layer in $(jq -r '.[0].Layers[]' manifest.json); do
  size=$(stat -c %s "$layer")
  total=$((total + size))
  echo "layer $layer: $size bytes"
  tar -tvf "$layer" >>listing
done
echo "$name: $(wc -l <listing) entries, $total bytes of layers"

has() { grep -Eq "$1" listing || die "$name: $2"; }
has '^drwxrwxrwt .* \.?/?tmp/?$' "/tmp missing or not mode 1777"
has ' \.?/?etc/passwd$' "/etc/passwd missing"
has ' \.?/?etc/group$' "/etc/group missing"
has ' \.?/?etc/ssl/certs/ca-certificates\.crt$' "the CA bundle is missing"
binary=$(jq -r --arg n "$name" '.images[$n].binary' "$spec")
has "^-rwxr-xr-x .* \\.?/?bin/$binary\$" "/bin/$binary missing or not mode 0755"
features_dir=$(jq -r --arg n "$name" '.images[$n].features_dir // empty' "$spec")
if [ -n "$features_dir" ]; then
  has " \\.?/?${features_dir#/}/[^/]+\\.feature\$" "no .feature file under $features_dir"
fi
if grep -Eq '/(ba|da|z|k|c|tc)?sh$|/busybox$| \.?/?nix/store/.|/ld-(linux|musl)[^/]*$|/lib[^/]*\.so(\.[0-9]+)*$' listing; then
  grep -E '/(ba|da|z|k|c|tc)?sh$|/busybox$| \.?/?nix/store/.|/ld-(linux|musl)[^/]*$|/lib[^/]*\.so(\.[0-9]+)*$' listing >&2
  die "$name: a shell, a loader, a shared library or a store path is in the image"
fi

# The binary is static: an ELF executable with no PT_INTERP program header
# (static-pie has PT_DYNAMIC, but nothing for a loader to do).
mkdir bin-out
for layer in $(jq -r '.[0].Layers[]' manifest.json); do
  tar -xf "$layer" -C bin-out --wildcards "bin/$binary" "./bin/$binary" 2>/dev/null || true
done
exe=bin-out/bin/$binary
[ -f "$exe" ] || die "$name: could not extract /bin/$binary"
u() { od -An -t "u$2" -j "$1" -N "$2" "$exe" | tr -d ' '; }
[ "$(head -c 4 "$exe" | od -An -t x1 | tr -d ' ')" = 7f454c46 ] || die "$name: /bin/$binary is not ELF"
[ "$(u 4 1)" = 2 ] || die "$name: /bin/$binary is not a 64-bit ELF"
phoff=$(u 32 8) phentsize=$(u 54 2) phnum=$(u 56 2)
for ((i = 0; i < phnum; i++)); do
  if [ "$(u $((phoff + i * phentsize)) 4)" = 3 ]; then
    die "$name: /bin/$binary asks for a program interpreter (not static)"
  fi
done
echo "$name: /bin/$binary is a static ELF executable ($(stat -c %s "$exe") bytes)"

max=$(jq -r --arg n "$name" '.images[$n].maxLayerBytes // empty' "$spec")
if [ -n "$max" ] && [ "$total" -gt "$max" ]; then
  die "$name: layers hold $total bytes, more than the $max of the description"
fi
echo "check-archive: $name ok"
