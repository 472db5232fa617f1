#!/usr/bin/env bash
# Fleet benchmark (issue 20): five machines made from one base disk, each with its own user
# data, imaged into one deduplicating store (image --dedup), against five plain images.
#
# Usage: sudo bench/fleet.sh DISK_IMAGE [--machines 5] [--pct 5] [--work DIR] [--keep] [--s3]
#
#   DISK_IMAGE  the base (bench/make-disk.sh); it is copied, never changed
#   --machines  how many machines (default 5)
#   --pct       each machine's own data: about PCT% of each filesystem's used data modified,
#               added and deleted by bench/mutate.py, with a seed of its own (default 5)
#   --s3        also into an S3 store (SeaweedFS started here on 127.0.0.1)
#   --encrypt   also into an encrypted local store (--dedup --encrypt, one key for the store)
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Reports, for the local folder (and S3): the bytes the store holds (packs, index files and
# images) against one machine's plain image and against all the plain images; the seconds of
# each dedup image against its plain one; the last machine's restore from the store against
# its restore from its plain image (plain images are always in a local folder). Target: the fleet in at most 1.6 x one machine's
# image. Output: Markdown on stdout and in bench/results/fleet-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
. "$here/lib.sh"
usage() { sed -n '5,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
base=$(readlink -f "$1"); shift
machines=5 pct=5 work="" keep=0 s3=0 encrypt=0
while [ $# -gt 0 ]; do
  case "$1" in
    --machines) machines=$2; shift 2 ;;
    --pct) pct=$2; shift 2 ;;
    --work) work=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    --s3) s3=1; shift ;;
    --encrypt) encrypt=1; shift ;;
    *) usage ;;
  esac
done
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "fleet.sh: $lb not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "fleet.sh: run as root (loop devices, mounts)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-fleet.XXXXXX)
mkdir -p "$work/mnt" "$work/plain" "$work/store" "$work/secret-store"
loops=() pids=()
cleanup() {
  mountpoint -q "$work/mnt" && umount "$work/mnt" || true
  for l in "${loops[@]}"; do partx -d "$l" 2>/dev/null || true; losetup -d "$l" 2>/dev/null || true; done
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

# the machines: copies of the base, each changed by mutate.py with its own seed
for m in $(seq 1 "$machines"); do
  cp --sparse=always "$base" "$work/pc$m.img"
  loop=$(losetup --find --show "$work/pc$m.img"); loops+=("$loop")
  partx -a "$loop" 2>/dev/null || true
  i=0
  for p in $(ls "${loop}"p* 2>/dev/null | sort); do
    i=$((i + 1))
    case "$(blkid -o value -s TYPE "$p" || true)" in
      ext4) mount "$p" "$work/mnt" ;;
      ntfs) ntfs-3g "$p" "$work/mnt" ;;
      *) continue ;;
    esac
    python3 "$here/mutate.py" "$work/mnt" --pct "$pct" --seed "$((m * 100 + i))" --capture /dev/null >/dev/null
    umount "$work/mnt"
  done
  partx -d "$loop" 2>/dev/null || true
  losetup -d "$loop"; loops=()
done
sync

bytes() { du -sb "$1" | cut -f1; }
run_fleet() { # DEST_DIR_OR_URL LABEL SIZE_FN [EXTRA_FLAGS...] (of the --dedup images)
  local dest=$1 label=$2 size_fn=$3 t0 t1 tp td
  shift 3
  local extra=("$@")
  local plain_total=0 dedup_secs=0 plain_secs=0 one=0
  for m in $(seq 1 "$machines"); do
    t0=$(now); "$lb" image "$work/pc$m.img" -o "$work/plain/pc$m.lbi" >/dev/null 2>&1; t1=$(now)
    tp=$(echo "$t1 - $t0" | bc -l)
    t0=$(now); "$lb" image "$work/pc$m.img" -o "$dest/pc$m.lbi" --dedup ${extra[@]+"${extra[@]}"} >/dev/null 2>&1; t1=$(now)
    td=$(echo "$t1 - $t0" | bc -l)
    sz=$(stat -c %s "$work/plain/pc$m.lbi")
    [ "$m" = 1 ] && one=$sz
    plain_total=$((plain_total + sz))
    plain_secs=$(echo "$plain_secs + $tp" | bc -l); dedup_secs=$(echo "$dedup_secs + $td" | bc -l)
    printf '| %s | pc%d | %d | %.2f | %.2f |\n' "$label" "$m" "$sz" "$tp" "$td"
    [ "$m" = "$machines" ] || rm -f "$work/plain/pc$m.lbi"
  done
  local stored; stored=$($size_fn "$dest")
  local vflags=() a
  for a in ${extra[@]+"${extra[@]}"}; do [ "$a" = --encrypt ] || vflags+=("$a"); done
  "$lb" verify "$dest" ${vflags[@]+"${vflags[@]}"} >/dev/null 2>&1 || { echo "fleet.sh: verify $dest FAILED" >&2; exit 1; }
  # the last machine restored from its plain image and from the store (whose blocks lie in
  # the packs of every machine before it), the page cache dropped before each
  local last="pc$machines" rp rd
  fallocate -l "$(stat -c %s "$work/$last.img")" "$work/target.img"
  drop; t0=$(now); "$lb" restore "$work/plain/$last.lbi" "$work/target.img" --yes >/dev/null 2>&1; t1=$(now)
  rp=$(echo "$t1 - $t0" | bc -l)
  drop; t0=$(now); "$lb" restore "$dest/$last.lbi" "$work/target.img" --yes ${vflags[@]+"${vflags[@]}"} >/dev/null 2>&1 \
    || { echo "fleet.sh: restore $dest/$last.lbi FAILED" >&2; exit 1; }
  t1=$(now); rd=$(echo "$t1 - $t0" | bc -l)
  rm -f "$work/target.img" "$work/plain/$last.lbi"
  echo
  printf -- '- %s: restoring %s took %.2f s from the store, %.2f s from its plain image (%.2f x its speed)\n' \
    "$label" "$last" "$rd" "$rp" "$(echo "$rp / $rd" | bc -l)"
  echo
  printf -- '- %s: the store holds %d bytes for %d machines: %.2f x one plain image (%d bytes; target <= 1.6), %.2f x the %d plain images (%d bytes); imaging took %.2f s with --dedup, %.2f s plain\n' \
    "$label" "$stored" "$machines" "$(echo "$stored / $one" | bc -l)" "$one" \
    "$(echo "$stored / $plain_total" | bc -l)" "$machines" "$plain_total" "$dedup_secs" "$plain_secs"
  echo
}
local_size() { bytes "$1"; }
{
  echo "# Fleet: $machines machines from $(basename "$base") ($(stat -c %s "$base") bytes), ${pct}% own data each"
  echo
  echo "| store | machine | plain image bytes | plain s | dedup s |"
  echo "|---|---|---:|---:|---:|"
  run_fleet "$work/store" "local folder" local_size
  if [ "$encrypt" = 1 ]; then
    echo "fleet bench passphrase" > "$work/pass"
    run_fleet "$work/secret-store" "local folder, encrypted" local_size --encrypt --key-file "$work/pass"
  fi
} | tee "$work/report.md"

if [ "$s3" = 1 ]; then
  command -v weed >/dev/null || { echo "fleet.sh: weed missing (.ci/install-deps.sh)" >&2; exit 1; }
  start_weed "$work" FLEETBENCHKEY fleet-bench-secret fleet
  s3_size() { "$lb" gc "$1" --dry-run --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["pack_bytes"])'; }
  run_fleet "s3://fleet/pcs" "S3 (packs only)" s3_size | tee -a "$work/report.md"
fi
mkdir -p "$here/results"
cp "$work/report.md" "$here/results/fleet-$(date -u +%Y-%m-%d).md"
