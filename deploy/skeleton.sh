#!/usr/bin/env bash
# Writes the workspace's dependency skeleton to OUT_DIR: the root Cargo.toml and Cargo.lock, every
# member's Cargo.toml, and a stub source file at the path of every target cargo knows (libraries,
# binaries, tests, benches, examples, build scripts). Building the skeleton builds exactly the
# external dependencies of the real workspace, so deploy/Dockerfile caches that (long) build in a
# layer that changes only when a manifest or Cargo.lock does.
#
# Usage, from the workspace root:  bash deploy/skeleton.sh OUT_DIR
# The target list comes from `cargo metadata --no-deps` (no network, no registry), so a new crate,
# [[bench]] or [[test]] needs no change here or in the Dockerfile. deploy/validate.sh checks that
# the skeleton is a complete workspace (`cargo metadata --locked` inside it).
set -euo pipefail

out=${1:?usage: skeleton.sh OUT_DIR}
root=$(pwd -P)
meta=$(cargo metadata --no-deps --offline --format-version 1)

ws_root=$(grep -o '"workspace_root":"[^"]*"' <<<"$meta" | sed 's/.*:"\(.*\)"$/\1/')
[ "$ws_root" = "$root" ] || { echo "skeleton: run from the workspace root ($ws_root)" >&2; exit 1; }

mkdir -p "$out"
cp Cargo.toml Cargo.lock "$out/"

rel() { local p=$1; echo "${p#"$root"/}"; }

# Member manifests.
while read -r manifest; do
  m=$(rel "$manifest")
  mkdir -p "$out/$(dirname "$m")"
  cp "$m" "$out/$m"
done < <(grep -o '"manifest_path":"[^"]*"' <<<"$meta" | sed 's/.*:"\(.*\)"$/\1/')

# Targets: "kind":[...],"crate_types":[...],"name":"...","src_path":"..." (cargo's field order).
targets=$(grep -o '"kind":\[[^]]*\],"crate_types":\[[^]]*\],"name":"[^"]*","src_path":"[^"]*"' <<<"$meta" || true)
expected=$(grep -o '"src_path":' <<<"$meta" | wc -l)
found=$(grep -c . <<<"$targets" || true)
if [ "$found" -ne "$expected" ]; then
  echo "skeleton: parsed $found of $expected targets from cargo metadata (format changed?)" >&2
  exit 1
fi
while read -r target; do
  kind=$(sed 's/^"kind":\["\([^"]*\)".*/\1/' <<<"$target")
  src=$(rel "$(sed 's/.*"src_path":"\([^"]*\)"$/\1/' <<<"$target")")
  mkdir -p "$out/$(dirname "$src")"
  case "$kind" in
    lib | rlib | dylib | cdylib | staticlib | proc-macro) : >"$out/$src" ;;
    *) echo 'fn main() {}' >"$out/$src" ;; # bin, test, bench, example, custom-build
  esac
done <<<"$targets"
