#!/usr/bin/env bash
# vendor/russh is the published russh crate plus vendor/russh.patch, nothing else.
#
#   vendor/russh-patch.sh check     verify that (CI runs this)
#   vendor/russh-patch.sh diff      rewrite vendor/russh.patch from vendor/russh
#
# The published crate comes from crates.io through cargo, which verifies its checksum.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=0.65.1
mode=${1:-check}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A throwaway project outside our workspace, so cargo fetches the real crate rather
# than our [patch.crates-io] copy.
mkdir -p "$work/probe/src"
cat > "$work/probe/Cargo.toml" <<TOML
[package]
name = "probe"
version = "0.0.0"
edition = "2024"

[dependencies]
russh = { version = "=$version", default-features = false, features = ["ring"] }

[workspace]
TOML
touch "$work/probe/src/lib.rs"
cargo fetch --quiet --manifest-path "$work/probe/Cargo.toml"
crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"russh-$version.crate" | head -n 1)
mkdir "$work/a"
tar -xzf "$crate" -C "$work/a" --strip-components=1

case "$mode" in
    diff)
        # diff exits 1 when the trees differ, which is the point.
        (cd "$work" && ln -s "$here/russh" b && diff -ruN a b || [ $? -eq 1 ]) > "$here/russh.patch"
        echo "wrote vendor/russh.patch ($(grep -c '^+++ ' "$here/russh.patch") files)"
        ;;
    check)
        (cd "$work/a" && patch -p1 --quiet --no-backup-if-mismatch < "$here/russh.patch")
        if ! diff -r "$work/a" "$here/russh"; then
            echo "error: vendor/russh is not russh $version plus vendor/russh.patch;" \
                 "run vendor/russh-patch.sh diff after changing vendor/russh" >&2
            exit 1
        fi
        echo "vendor/russh is russh $version plus vendor/russh.patch"
        ;;
    *)
        echo "usage: $0 check|diff" >&2
        exit 2
        ;;
esac
