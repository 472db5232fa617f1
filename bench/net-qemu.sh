#!/usr/bin/env bash
# Imaging onto SMB and NFS stores against imaging onto the guest's tmpfs, measured inside the
# booted standard rescue system (issue 19's SMB target; this host's kernel has no cifs or nfs
# client, so the host cannot measure them). Runs tests/qemu_e2e.rs's ignored
# bench_network_stores_in_guest: smbd and nfs-ganesha on 127.0.0.1, reached by the guest
# through QEMU's user network; three rounds in rotated order; the guest's own write_seconds.
# Needs root and out/standard (./build.sh --flavour standard). Under TCG, so the guest's CPU
# is slow: the ratios say what the network path costs next to the compression there.
# Output: the BENCH lines, also in bench/results/net-qemu-DATE.md.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/.."
out=$(CI=true LIFEBOAT_REQUIRE_QEMU=1 cargo test --release --test qemu_e2e -- --ignored \
  --exact bench_network_stores_in_guest --nocapture --test-threads=1 2>&1 | grep '^BENCH' | sed 's/^BENCH //')
echo "$out"
mkdir -p "$here/results"
{ echo "# Network stores in the guest ($(date -u +%Y-%m-%d))"; echo; echo "$out" | sed 's/^/- /'; } \
  > "$here/results/net-qemu-$(date -u +%Y-%m-%d).md"
