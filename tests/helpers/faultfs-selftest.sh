#!/usr/bin/env bash
# Self-test of tests/helpers/faultfs.py through a loop device: a bad_read range gives EIO on an
# O_DIRECT read of the loop device, a bad_write range gives EIO on an O_DIRECT write,
# enospc_after gives ENOSPC, drop_writes reports success but keeps the old data, and clearing
# the control file heals everything. Runs with both buffered and --direct-io=on loop devices.
#
# Usage: sudo tests/helpers/faultfs-selftest.sh      (needs root, /dev/fuse, python3-fusepy)
# Not root: prints SKIP and exits 0, unless CI=true or LIFEBOAT_REQUIRE_ROOT=1 (then fails).
set -euo pipefail
export LC_ALL=C

here=$(cd "$(dirname "$0")" && pwd)
faultfs="$here/faultfs.py"
python=/usr/bin/python3 # Debian's python, which has python3-fusepy (not a pyenv shim)

skip_or_fail() {
  if [ "${CI:-}" = true ] || [ "${CI:-}" = 1 ] || [ "${LIFEBOAT_REQUIRE_ROOT:-}" = 1 ]; then
    echo "FAIL: $*" >&2
    exit 1
  fi
  echo "SKIP: $*"
  exit 0
}

[ "$(id -u)" -eq 0 ] || skip_or_fail "faultfs self-test needs root"
[ -e /dev/fuse ] || skip_or_fail "/dev/fuse is missing"
"$python" -c 'import fusepy' 2>/dev/null ||
  skip_or_fail "python3-fusepy is not installed (bash .ci/install-deps.sh)"
for tool in losetup dd; do
  command -v "$tool" >/dev/null || skip_or_fail "$tool is not installed"
done

work=$(mktemp -d /tmp/faultfs-selftest.XXXXXX)
mnt="$work/mnt"
ctl="$work/control.json"
backing="$work/backing.img"
fs_pid=""
loopdev=""

unmount_fs() {
  if mountpoint -q "$mnt" 2>/dev/null; then
    fusermount -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || umount -l "$mnt" || true
  fi
  if [ -n "$fs_pid" ]; then
    # faultfs exits by itself once unmounted; give it a moment, then insist
    for _ in $(seq 50); do kill -0 "$fs_pid" 2>/dev/null || break; sleep 0.1; done
    kill "$fs_pid" 2>/dev/null || true
    wait "$fs_pid" 2>/dev/null || true
    fs_pid=""
  fi
}

detach_loop() {
  if [ -n "$loopdev" ]; then
    losetup -d "$loopdev" 2>/dev/null || true
    loopdev=""
  fi
}

cleanup() {
  local rc=$?
  detach_loop
  unmount_fs
  rm -rf "$work"
  if [ "$rc" -ne 0 ]; then echo "faultfs self-test: FAILED" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
  echo "FAIL: $*" >&2
  if [ -s "$work/faultfs.log" ]; then
    echo "--- faultfs log" >&2
    cat "$work/faultfs.log" >&2
  fi
  exit 1
}

# set_control JSON: replace the control file atomically, as faultfs.py asks
set_control() {
  printf '%s\n' "$1" >"$ctl.tmp"
  mv -f "$ctl.tmp" "$ctl"
}

# expect_error MESSAGE CMD...: CMD must fail and its stderr must contain MESSAGE
expect_error() {
  local want=$1 err
  shift
  if err=$("$@" 2>&1 >/dev/null); then
    fail "expected '$want' from: $*"
  fi
  case "$err" in
    *"$want"*) ;;
    *) fail "expected '$want' from: $*; got: $err" ;;
  esac
}

# expect_ok CMD...: CMD must succeed
expect_ok() {
  local err
  err=$("$@" 2>&1 >/dev/null) || fail "expected success from: $*; got: $err"
}

stat_count() { # stat_count KEY: a counter from CONTROL.stats (0 when absent)
  "$python" -c 'import json,sys
try: print(json.load(open(sys.argv[1])).get(sys.argv[2], 0))
except OSError: print(0)' "$ctl.stats" "$1"
}

start_fs() {
  mkdir -p "$mnt"
  set_control '{}'
  "$python" "$faultfs" "$backing" "$mnt" "$ctl" >"$work/faultfs.log" 2>&1 &
  fs_pid=$!
  for _ in $(seq 100); do
    [ -e "$mnt/disk" ] && return 0
    kill -0 "$fs_pid" 2>/dev/null || fail "faultfs.py exited before mounting"
    sleep 0.1
  done
  fail "faultfs did not mount $mnt within 10 s"
}

MiB=$((1024 * 1024))
size=$((64 * MiB))

run_case() { # run_case LOSETUP_OPTS...
  echo "== loop device with: losetup ${*:-(buffered)}"
  rm -f "$ctl.stats"
  loopdev=$(losetup -f --show "$@" "$mnt/disk")
  [ "$(blockdev --getsize64 "$loopdev")" -eq "$size" ] || fail "loop device has the wrong size"

  # a known pattern everywhere, written through the loop device
  expect_ok dd if="$work/pattern" of="$loopdev" bs=4M oflag=direct conv=fsync
  cmp -s "$work/pattern" "$backing" || fail "data written through the loop device differs"

  # --- read EIO: only the requests touching the bad range fail
  set_control "{\"bad_read\": [[$((4 * MiB + 8192)), 4096]]}"
  expect_error "Input/output error" dd if="$loopdev" of=/dev/null iflag=direct bs=4096 \
    skip=$(((4 * MiB + 8192) / 4096)) count=1
  expect_ok dd if="$loopdev" of=/dev/null iflag=direct bs=4096 \
    skip=$(((4 * MiB + 8192) / 4096 - 1)) count=1
  expect_ok dd if="$loopdev" of=/dev/null iflag=direct bs=4096 \
    skip=$(((4 * MiB + 8192) / 4096 + 1)) count=1
  expect_error "Input/output error" dd if="$loopdev" of=/dev/null iflag=direct bs=1M
  [ "$(stat_count read_eio)" -ge 1 ] || fail "faultfs did not count the read EIO"
  set_control '{}'
  expect_ok dd if="$loopdev" of=/dev/null iflag=direct bs=1M

  # --- write EIO
  set_control "{\"bad_write\": [[$((8 * MiB)), 512]]}"
  expect_error "Input/output error" dd if=/dev/zero of="$loopdev" oflag=direct conv=fsync \
    bs=4096 seek=$((8 * MiB / 4096)) count=1
  expect_ok dd if=/dev/zero of="$loopdev" oflag=direct conv=fsync \
    bs=4096 seek=$((8 * MiB / 4096 + 1)) count=1
  [ "$(stat_count write_eio)" -ge 1 ] || fail "faultfs did not count the write EIO"
  cmp -s -n 4096 -i $((8 * MiB)) "$work/pattern" "$backing" ||
    fail "a failed write changed the backing file"

  # --- ENOSPC past a limit; writes below it still work
  set_control "{\"enospc_after\": $((32 * MiB))}"
  expect_error "No space left on device" dd if=/dev/zero of="$loopdev" oflag=direct \
    conv=fsync bs=1M seek=32 count=1
  expect_ok dd if=/dev/zero of="$loopdev" oflag=direct conv=fsync bs=1M seek=31 count=1
  [ "$(stat_count enospc)" -ge 1 ] || fail "faultfs did not count the ENOSPC"

  # --- drop_writes: success is reported, nothing reaches the backing file
  set_control '{}'
  expect_ok dd if="$work/pattern" of="$loopdev" bs=4M oflag=direct conv=fsync
  set_control '{"drop_writes": true}'
  expect_ok dd if=/dev/zero of="$loopdev" oflag=direct conv=fsync bs=1M seek=40 count=2
  cmp -s "$work/pattern" "$backing" || fail "drop_writes let data reach the backing file"
  [ "$(stat_count dropped)" -ge 1 ] || fail "faultfs did not count the dropped writes"
  # only the bytes inside the given ranges are dropped; the rest of the request lands
  set_control "{\"drop_writes\": [[$((40 * MiB + 4096)), 4096]]}"
  expect_ok dd if=/dev/zero of="$loopdev" oflag=direct conv=fsync bs=1M seek=40 count=1
  cmp -s -n 4096 -i $((40 * MiB + 4096)) "$work/pattern" "$backing" ||
    fail "drop_writes with a range let its bytes reach the backing file"
  cmp -s -n 4096 -i $((40 * MiB)) /dev/zero "$backing" ||
    fail "drop_writes with a range dropped bytes outside it"
  set_control '{}'
  expect_ok dd if="$work/pattern" of="$loopdev" oflag=direct conv=fsync bs=1M skip=40 seek=40 \
    count=1

  # --- an unparsable control file keeps the last good one in force
  set_control "{\"bad_read\": [[0, 4096]]}"
  expect_error "Input/output error" dd if="$loopdev" of=/dev/null iflag=direct bs=4096 count=1
  expect_error "Input/output error" dd if="$loopdev" of=/dev/null iflag=direct bs=4096 count=1
  printf '{"bad_read": [[0,' >"$ctl"
  expect_error "Input/output error" dd if="$loopdev" of=/dev/null iflag=direct bs=4096 count=1

  # --- healed: the whole device reads back as written
  set_control '{}'
  expect_ok dd if="$loopdev" of="$work/readback" iflag=direct bs=4M
  cmp -s "$work/pattern" "$work/readback" || fail "read-back after healing differs"

  detach_loop
}

truncate -s "$size" "$backing"
# deterministic non-zero pattern, so dropped or misplaced writes are visible
"$python" -c 'import random,sys
r = random.Random(42)
sys.stdout.buffer.write(r.randbytes(int(sys.argv[1])))' "$size" >"$work/pattern"

start_fs
run_case
run_case --direct-io=on
unmount_fs
mountpoint -q "$mnt" && fail "$mnt is still mounted"
echo "faultfs self-test: OK (read EIO, write EIO, ENOSPC, drop_writes; buffered and direct-io loops)"
