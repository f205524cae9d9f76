#!/usr/bin/env bash
# Builds the RPM of glance-rs: target/generate-rpm/glance-rs-VERSION-1.ARCH.rpm.
#
# cargo-generate-rpm packages what is already built, so this builds the binaries with the
# `dist` profile (the one `cargo deb` uses: a .deb built first makes this build a no-op),
# gzips the man pages next to them, then runs `cargo generate-rpm`. Extra arguments go to
# cargo generate-rpm (e.g. -o DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=dist
target_dir=${CARGO_TARGET_DIR:-target}

cargo build --profile "$profile" --locked --bins

# Man pages, gzipped as RPM distributions ship them (Cargo.toml's generate-rpm assets
# read them from here: target/release/ stands for the profile's directory).
man_out="$target_dir/$profile/man"
rm -rf "$man_out"
mkdir -p "$man_out"
for page in man/*.[1-9]; do
    gzip -9 -n -c "$page" > "$man_out/$(basename "$page").gz"
done

cargo generate-rpm --profile "$profile" "$@"
