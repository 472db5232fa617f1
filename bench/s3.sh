#!/usr/bin/env bash
# S3 benchmark (issue 20): imaging to and restoring from an S3 store (SeaweedFS, a real
# distributed object store, started here on 127.0.0.1), each against the same job on local
# files, in one run.
#
# Usage: sudo bench/s3.sh DISK_IMAGE [--runs N] [--work DIR] [--keep]
#
#   --runs N    rounds; each round times every row once, in a rotated order; the report
#               gives medians and the ratio of the medians (default 3)
#   --work DIR  where the images, the store's data and the target go (default /var/tmp/…)
#   --keep      keep the work directory
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Setup: `weed server -s3` (master, volume server, filer and S3 gateway in one process) with
# its data in WORK/weed, a bucket "bench". Rows (the page cache is dropped before each; wall
# seconds; each image is written, read back and checked, as always):
#   image local     lifeboat image DISK -o WORK/i.lbi
#   image s3        lifeboat image DISK -o s3://bench/i.lbi
#   restore local   lifeboat restore WORK/d.lbi WORK/t.img --yes
#   restore s3      lifeboat restore s3://bench/d.lbi WORK/t.img --yes
# Target: image s3 >= 0.70 x the speed of image local. The store shares the machine's cores
# with lifeboat, as it does not in use.
# Output: a Markdown report on stdout and in bench/results/s3-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
rows_args 3 "$@"
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "s3.sh: $lb not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "s3.sh: run as root (drop_caches)" >&2; exit 1; }
for t in weed curl; do
  command -v "$t" >/dev/null || { echo "s3.sh: $t missing (.ci/install-deps.sh)" >&2; exit 1; }
done
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-s3.XXXXXX)
mkdir -p "$work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
start_weed "$work" BENCHACCESSKEY bench-secret-key bench

echo "s3.sh: imaging $disk" >&2
"$lb" image "$disk" -o "$work/d.lbi" >/dev/null 2>&1
"$lb" image "$disk" -o s3://bench/d.lbi >/dev/null 2>&1
size=$(stat -c %s "$disk")

fresh_target() { rm -f "$work/t.img"; fallocate -l "$size" "$work/t.img"; }
del() { curl -s --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" -X DELETE "$AWS_ENDPOINT_URL/bench/$1" >/dev/null; }
row_image_local() { rm -f "$work/i.lbi"; drop; timed "$lb" image "$disk" -o "$work/i.lbi"; }
row_image_s3() { del i.lbi; drop; timed "$lb" image "$disk" -o s3://bench/i.lbi; }
row_restore_local() { fresh_target; drop; timed "$lb" restore "$work/d.lbi" "$work/t.img" --yes; }
row_restore_s3() { fresh_target; drop; timed "$lb" restore s3://bench/d.lbi "$work/t.img" --yes; }
rows=(image_local image_s3 restore_local restore_s3)

declare -A times
rows_run s3.sh
report=$(rows_report \
  "S3 store (SeaweedFS $(weed version 2>/dev/null | awk '{print $3; exit}') on loopback), disk $disk ($size bytes), image $(stat -c %s "$work/d.lbi") bytes, $runs rounds" \
  "image_local:image_s3:image to S3, the local speed (target >= 0.70)" \
  "restore_local:restore_s3:restore from S3, the local speed")
echo "$report"
mkdir -p "$here/results"
echo "$report" > "$here/results/s3-$(date -u +%Y-%m-%d).md"
