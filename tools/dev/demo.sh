#!/usr/bin/env bash
# Builds casfs, then walks through the object store in a temporary directory:
# add the project's own sources twice (the second time everything dedups), pack
# them into compressed pack files, verify, and read an object back.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
root=$PWD

echo "building (tools/dev/build.sh; installs missing packages first)…"
tools/dev/build.sh >/dev/null
casfs=$root/build/tools/casfs

work=$(mktemp -d /var/tmp/casfs-demo.XXXXXX)
trap 'rm -rf "$work"' EXIT
store=$work/store

bold='' plain=''
if [[ -t 1 ]]; then
  bold=$'\033[1m' plain=$'\033[0m'
fi
step() { printf '\n%s$ %s%s\n' "$bold" "$*" "$plain"; }
run() {
  step "$*"
  "$@"
}

mapfile -t sources < <(find store tools -type f \( -name '*.cc' -o -name '*.h' \) | sort)

run "$casfs" --version
run "$casfs" store init "$store"

step "$casfs store add $store <${#sources[@]} source files>"
"$casfs" store add "$store" "${sources[@]}" >"$work/added.txt" 2>"$work/added.err"
head -5 "$work/added.txt"
echo "… ($(wc -l <"$work/added.txt") lines, the same as sha256sum prints)"
cat "$work/added.err"
step "$casfs store add $store <the same ${#sources[@]} files again>   # nothing new is stored"
"$casfs" store add "$store" "${sources[@]}" >/dev/null
run "$casfs" store status "$store"

run "$casfs" store pack "$store"
run "$casfs" store status "$store" --json
run "$casfs" store verify "$store"

first=${sources[0]}
hash=$(sha256sum "$first" | cut -d' ' -f1)
step "$casfs store cat $store $hash | cmp - $first"
"$casfs" store cat "$store" "$hash" | cmp - "$first"
echo "identical: $first came back byte for byte from the pack"

echo
echo "demo done (the store in $work is removed on exit)"
