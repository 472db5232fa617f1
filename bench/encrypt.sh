#!/usr/bin/env bash
# Encryption benchmark (issue 20): imaging and restoring an encrypted image against the same
# jobs on a plain one, in one run, on local files.
#
# Usage: sudo bench/encrypt.sh DISK_IMAGE [--runs N] [--work DIR] [--keep]
#
#   --runs N    rounds; each round times every row once, in a rotated order; the report
#               gives medians and the ratio of the medians (default 5)
#   --work DIR  where the images and the target go (default: a new dir in /var/tmp)
#   --keep      keep the work directory
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Rows (the page cache is dropped before each; wall seconds; each image job includes its
# read-back verification, as always):
#   image plain        lifeboat image DISK -o WORK/p.lbi
#   image encrypted    lifeboat --key-file K image DISK -o WORK/e.lbi --encrypt
#   restore plain      lifeboat restore WORK/p.lbi WORK/t.img --yes
#   restore encrypted  lifeboat --key-file K restore WORK/e.lbi WORK/t.img --yes
# Target: image encrypted >= 0.90 x the speed of image plain.
# Output: a Markdown report on stdout and in bench/results/encrypt-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
rows_args 5 "$@"
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "encrypt.sh: $lb not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "encrypt.sh: run as root (drop_caches)" >&2; exit 1; }
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-encrypt.XXXXXX)
mkdir -p "$work"
cleanup() { [ "$keep" = 1 ] || rm -rf "$work"; }
trap cleanup EXIT
printf 'bench passphrase, not secret\n' > "$work/key"
size=$(stat -c %s "$disk")

fresh_target() { rm -f "$work/t.img"; fallocate -l "$size" "$work/t.img"; }

row_image_plain() { rm -f "$work/p.lbi"; drop; timed "$lb" image "$disk" -o "$work/p.lbi"; }
row_image_encrypted() {
  rm -f "$work/e.lbi"; drop
  timed "$lb" --key-file "$work/key" image "$disk" -o "$work/e.lbi" --encrypt
}
row_restore_plain() {
  [ -f "$work/p.lbi" ] || row_image_plain >/dev/null
  fresh_target; drop; timed "$lb" restore "$work/p.lbi" "$work/t.img" --yes
}
row_restore_encrypted() {
  [ -f "$work/e.lbi" ] || row_image_encrypted >/dev/null
  fresh_target; drop; timed "$lb" --key-file "$work/key" restore "$work/e.lbi" "$work/t.img" --yes
}
rows=(image_plain image_encrypted restore_plain restore_encrypted)

declare -A times
rows_run encrypt.sh
report=$(rows_report \
  "Encrypted images, disk $disk ($size bytes), plain image $(stat -c %s "$work/p.lbi") bytes, encrypted $(stat -c %s "$work/e.lbi") bytes, $runs rounds" \
  "image_plain:image_encrypted:imaging encrypted, the plain speed (target >= 0.90)" \
  "restore_plain:restore_encrypted:restoring encrypted, the plain speed")
echo "$report"
mkdir -p "$here/results"
echo "$report" > "$here/results/encrypt-$(date -u +%Y-%m-%d).md"
