#!/usr/bin/env bash
# Installs the Debian 12 packages casfs needs to build and test. Idempotent and
# quiet when everything is already there, so the other dev scripts can call it
# every time.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libfuse3-dev fuse3
  liburing-dev libzstd-dev liblmdb-dev libxxhash-dev libssl-dev
  libgtest-dev libcli11-dev nlohmann-json3-dev
  # tests/cli and tests/integration: JSON, real-mount tools, locks, random data
  python3 util-linux psmisc procps attr acl sqlite3 rsync git openssl
  # packaging: cpack's dependency scan, and what tests/packaging checks in the .deb
  dpkg-dev file man-db groff-base bash-completion
  # tools/dev/fuzz.sh and tidy.sh: clang with libFuzzer and the sanitizer runtimes
  clang libclang-rt-dev clang-tidy
)

missing=()
for pkg in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]} == 0)); then
  exit 0
fi

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if ((EUID != 0)); then
  if ! command -v sudo >/dev/null; then
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
