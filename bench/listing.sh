#!/usr/bin/env bash
# Listing an S3 folder of many images (issue 20): `prune --dry-run` lists the folder's
# images and opens one kept chain, so its time is mostly the listing. Run with two builds
# side by side, e.g. the one before listings read only headers and metadata (OLD) and this
# one (LIFEBOAT).
#
# Usage: bench/listing.sh OLD_BINARY [--images 40] [--runs 3]
#
#   OLD_BINARY  another lifeboat build to compare with
#   --images    how many images in the folder (default 40): each of a 512 MiB sparse disk
#               with 4 KiB of noise every 64 KiB (8,192 chunks, a 34 MB image)
#   --runs      rounds (default 3); medians are reported
#   LIFEBOAT    this build (default target/release/lifeboat)
#
# Output: Markdown on stdout and in bench/results/listing-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"
[ $# -ge 1 ] || { sed -n '7,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
old=$(readlink -f "$1"); shift
images=40 runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    *) echo "listing.sh: unknown $1" >&2; exit 2 ;;
  esac
done
new=${LIFEBOAT:-$repo/target/release/lifeboat}
command -v weed >/dev/null || { echo "listing.sh: weed missing (.ci/install-deps.sh)" >&2; exit 1; }
work=$(mktemp -d /var/tmp/lifeboat-listing.XXXXXX)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"' EXIT
start_weed "$work" LISTBENCHKEY list-bench-secret lst
python3 - "$work/d.img" <<'PY'
import os, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(512 << 20)
    for i in range(0, 512 << 20, 64 << 10):
        f.seek(i)
        f.write(os.urandom(4096))
PY
last=$(printf '%03d' $((images - 1)))
for i in $(seq -f '%03g' 0 $((images - 1))); do
  "$new" image "$work/d.img" -o "s3://lst/f/i$i.lbi" >/dev/null 2>&1
done
bytes=$("$new" info --json "s3://lst/f/i000.lbi" | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_bytes"])')
declare -A times
for r in $(seq 1 "$runs"); do
  for b in old new; do
    bin=$old; [ "$b" = new ] && bin=$new
    t0=$(date +%s.%N)
    "$bin" prune s3://lst/f --keep "s3://lst/f/i$last.lbi" --dry-run >"$work/out" 2>&1
    t1=$(date +%s.%N)
    [ "$(grep -c 'i[0-9]*\.lbi' "$work/out")" -ge "$((images - 1))" ] || { cat "$work/out" >&2; exit 1; }
    times[$b]="${times[$b]:-} $(echo "$t1 - $t0" | bc -l)"
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(echo "${times[old]}" | median) mn=$(echo "${times[new]}" | median)
mkdir -p "$here/results"
{
  echo "# Listing an S3 folder of $images images ($bytes bytes each, 8,192 chunks), SeaweedFS on loopback, $runs rounds"
  echo
  echo "| build | median s | runs |"
  echo "|---|---:|---|"
  printf '| old (%s) | %.3f | %s |\n' "$old" "$mo" "${times[old]}"
  printf '| new (%s) | %.3f | %s |\n' "$new" "$mn" "${times[new]}"
  echo
  printf -- '- the new build lists in %.2f x the old time\n' "$(echo "$mn / $mo" | bc -l)"
} | tee "$here/results/listing-$(date -u +%Y-%m-%d).md"
