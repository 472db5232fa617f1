#!/usr/bin/env bash
# The whole test suite: installs prerequisites (as root), then
#   tier 1: cargo test (unprivileged: sparse files, memory devices, fake sysfs trees), every
#           target but tests/root_*.rs
#   tier 2: root tests on loop devices (tests/root_*.rs, after the self-test of the FUSE fault
#           injector tests/helpers/faultfs.py); must run as root.
#   tier 3: the rescue environment in QEMU (tests/qemu_e2e.rs): builds both ISOs with build.sh
#           (cached), then boots them under SeaBIOS, OVMF and OVMF with Secure Boot, and runs
#           an unattended image + restore in a guest; and boot-test on bootable and broken
#           disks built with the mini kernel (tests/qemu_boottest.rs); must run as root.
# Under CI=true, a missing prerequisite (root, loop devices, a tool) fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/install-deps.sh
# A hung test must fail the run in minutes, not eat CI's 90-minute budget: each tier's tests
# run under `timeout`, which kills the whole process group (cargo and the test binaries).
limit() { local m=$1; shift; timeout --kill-after=30 "${m}m" "$@" || { rc=$?; [ $rc -ge 124 ] && echo "!! timed out after ${m} min: $*" >&2; exit $rc; }; }
echo "== tier 1: cargo test"
# Every target of --all-targets except the root tests (tests/root_*.rs), which tier 2 runs:
# the test targets are listed from cargo metadata, so a new tests/X.rs joins tier 1 and a new
# tests/root_X.rs joins tier 2 by its name alone.
tests=$(cargo metadata --locked --no-deps --format-version 1 | python3 -c '
import json, sys
for p in json.load(sys.stdin)["packages"]:
    for t in p["targets"]:
        if "test" in t["kind"] and not t["name"].startswith("root_"):
            print(t["name"])')
[ -n "$tests" ] || { echo "tier 1: cargo metadata listed no test targets" >&2; exit 1; }
tier1=(--lib --bins --examples --benches)
for t in $tests; do tier1+=(--test "$t"); done
LIFEBOAT_SKIP_QEMU=1 limit 30 cargo test --locked "${tier1[@]}"   # tier 3 runs the QEMU tests below
if [ "$(id -u)" -eq 0 ]; then
  echo "== tier 2: root tests on loop devices"
  LIFEBOAT_REQUIRE_ROOT=1 bash tests/helpers/faultfs-selftest.sh
  LIFEBOAT_REQUIRE_ROOT=1 limit 20 cargo test --locked --test 'root_*' -- --test-threads=1
elif [ "${CI:-}" = "true" ]; then
  echo "tier 2 needs root and CI=true forbids skipping it" >&2
  exit 1
else
  echo "== tier 2 SKIPPED: not root (run as root to test on loop devices)"
fi
if [ "$(id -u)" -eq 0 ]; then
  echo "== tier 3: QEMU (build.sh --flavour all, then tests/qemu_e2e.rs)"
  ./build.sh --flavour all
  LIFEBOAT_REQUIRE_QEMU=1 limit 30 cargo test --locked --test qemu_e2e --test qemu_boottest -- --test-threads=1 --nocapture
elif [ "${CI:-}" = "true" ]; then
  echo "tier 3 needs root (build.sh) and CI=true forbids skipping it" >&2
  exit 1
else
  echo "== tier 3 SKIPPED: not root (run as root to build the ISOs and boot them in QEMU)"
fi
