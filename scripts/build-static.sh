#!/usr/bin/env bash
# Builds the fully static release binary (glibc +crt-static, opt-level z, LTO, strip,
# panic=abort) and checks that `file` calls it statically linked.
# The flag is passed per target with an explicit --target, so build scripts and proc macros
# (built for the host) stay dynamic, which they must be.
# Output: target/x86_64-unknown-linux-gnu/release/lifeboat; prints its size in bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
# relocation-model=static gives a classic static executable (file: "statically linked")
# rather than static-pie; the rescue initramfs gains nothing from ASLR of PID 1.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
cargo build --release --locked --target x86_64-unknown-linux-gnu "$@"
bin=target/x86_64-unknown-linux-gnu/release/lifeboat
desc=$(file -b "$bin")
case "$desc" in
  *"statically linked"*) ;;
  *) echo "build-static: $bin is not static: $desc" >&2; exit 1 ;;
esac
echo "static binary: $bin, $(stat -c %s "$bin") bytes"
