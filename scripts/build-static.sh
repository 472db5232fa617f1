#!/usr/bin/env bash
# Builds the fully static release binary (glibc +crt-static, the release profile of Cargo.toml:
# opt-level "s" with zstd's C code at 2, LTO, strip, panic=abort) and checks that `file` calls
# it statically linked.
# The flag is passed per target with an explicit --target, so build scripts and proc macros
# (built for the host) stay dynamic, which they must be.
# Output: target/x86_64-unknown-linux-gnu/release/lifeboat; prints its size in bytes.
set -euo pipefail
cd "$(dirname "$0")/.."
# relocation-model=static gives a classic static executable (file: "statically linked")
# rather than static-pie; the rescue initramfs gains nothing from ASLR of PID 1.
# getrandom_backend: a static binary has no dlsym, so getrandom's default backend cannot find
# glibc's getrandom() and falls back to polling /dev/random, which never becomes readable on a
# freshly booted machine without an RNG (QEMU under TCG): the first `image` hung there. The
# getrandom(2) system call blocks only until the kernel's RNG is seeded, and blocking in it
# makes the kernel seed from CPU jitter within about a second.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static --cfg getrandom_backend=\"linux_getrandom\""
cargo build --release --locked --target x86_64-unknown-linux-gnu "$@"
bin=target/x86_64-unknown-linux-gnu/release/lifeboat
desc=$(file -b "$bin")
case "$desc" in
  *"statically linked"*) ;;
  *) echo "build-static: $bin is not static: $desc" >&2; exit 1 ;;
esac
echo "static binary: $bin, $(stat -c %s "$bin") bytes"
