# Shell functions shared by bench scripts; sourced (`. "$here/lib.sh"`), not run.

# disk_cleanup NAME: the EXIT trap of the disk builders (make-disk.sh, make-fs-disk.sh).
# Unmounts $mnt and $stage (lazily when busy), removes the partitions and detaches $loopdev
# when one was attached, deletes $work, and when the script failed says, as NAME, that a
# partial image is left at $out. Exits with the script's exit status.
#   trap 'disk_cleanup make-disk' EXIT
disk_cleanup() {
  local rc=$?
  mountpoint -q "$mnt" 2>/dev/null && { umount "$mnt" || umount -l "$mnt" || true; }
  mountpoint -q "$stage" 2>/dev/null && { umount "$stage" || umount -l "$stage" || true; }
  if [ -n "$loopdev" ]; then
    partx -d "$loopdev" 2>/dev/null || true
    losetup -d "$loopdev" 2>/dev/null || true
  fi
  rm -rf "$work"
  [ "$rc" -eq 0 ] || echo "$1: FAILED (partial image left at $out)" >&2
  exit "$rc"
}

# --- row benchmarks (net.sh, encrypt.sh): rows of jobs timed side by side in rounds ---

# rows_args DEFAULT_RUNS "$@": their options, DISK_IMAGE [--runs N] [--work DIR] [--keep].
# Sets disk, runs, work and keep; calls the script's usage() on anything else.
rows_args() {
  runs=$1
  shift
  [ $# -ge 1 ] || usage
  case "$1" in -h | --help) usage ;; esac
  disk=$(readlink -f "$1")
  shift
  work="" keep=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --runs) runs=$2; shift 2 ;;
      --work) work=$2; shift 2 ;;
      --keep) keep=1; shift ;;
      *) usage ;;
    esac
  done
}

# drop: writes back and drops the page cache, so that each row reads from the disk.
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# timed CMD...: runs CMD with its output in $work/out and prints its wall seconds; shows
# the output and fails when CMD fails.
timed() {
  /usr/bin/time -f '%e' -o "$work/time" "$@" >"$work/out" 2>&1 || { cat "$work/out" >&2; return 1; }
  cat "$work/time"
}

# rows_run NAME: runs each row of the array rows (the function row_ROW, which prints its
# seconds) once per round, $runs rounds, in an order rotated each round; the times go to
# the associative array times (declare -A times first). NAME prefixes the progress lines.
rows_run() {
  local r k n row t
  n=${#rows[@]}
  for ((r = 0; r < runs; r++)); do
    for ((k = 0; k < n; k++)); do
      row=${rows[$(((k + r) % n))]}
      t=$("row_$row")
      times[$row]="${times[$row]:-} $t"
      echo "$1: round $((r + 1)) $row ${t}s" >&2
    done
  done
}

# rows_report TITLE RATIO...: the Markdown report of $times: a table of medians, then one
# line per RATIO, "BASE_ROW:ROW:words", giving ROW's speed as a multiple of BASE_ROW's
# (the ratio of the medians); ratios whose rows did not run are left out.
rows_report() {
  local title=$1 row
  shift
  {
    echo "$title"
    for row in "${rows[@]}"; do echo "$row ${times[$row]}"; done
  } | /usr/bin/python3 -c '
import sys, statistics
lines = sys.stdin.read().splitlines()
print("# " + lines[0]); print()
med = {}
print("| row | median s | runs |"); print("|---|---:|---|")
for l in lines[1:]:
    name, *ts = l.split(); ts = [float(t) for t in ts]
    med[name] = statistics.median(ts)
    each = " ".join("%.2f" % t for t in ts)
    print(f"| {name} | {med[name]:.2f} | {each} |")
print()
for spec in sys.argv[1:]:
    base, row, words = spec.split(":", 2)
    if base in med and row in med:
        print(f"- {words}: {med[base]/med[row]:.2f} x")
' "$@"
}

# --- S3 (s3.sh, fleet.sh) ---

# start_weed WORK ACCESS_KEY SECRET_KEY BUCKET: starts SeaweedFS (`weed server -s3`: master,
# volume server, filer and S3 gateway in one process) on 127.0.0.1 with its data in WORK/weed,
# adds its PID to the caller's pids array (for its cleanup), exports the AWS_* variables
# lifeboat reads, and makes BUCKET. weed's gRPC ports are its HTTP ports + 10000, so the
# ports are picked with that one free too.
start_weed() {
  local work=$1 mp vp fp s3p
  export AWS_ACCESS_KEY_ID=$2 AWS_SECRET_ACCESS_KEY=$3 AWS_REGION=us-east-1
  printf '{"identities":[{"name":"bench","credentials":[{"accessKey":"%s","secretKey":"%s"}],"actions":["Admin","Read","Write","List","Tagging"]}]}\n' \
    "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$work/s3.json"
  mkdir -p "$work/weed"
  freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
  pick() { local p; while :; do p=$(freeport); [ "$p" -lt 55000 ] && ! (echo >"/dev/tcp/127.0.0.1/$((p + 10000))") 2>/dev/null && { echo "$p"; return; }; done; }
  mp=$(pick) vp=$(pick) fp=$(pick) s3p=$(pick)
  TMPDIR=$work/weed weed -logtostderr server -ip=127.0.0.1 -ip.bind=127.0.0.1 -dir="$work/weed" \
    -master.port="$mp" -master.volumeSizeLimitMB=256 -volume.port="$vp" -volume.max=100 \
    -filer -filer.port="$fp" -s3 -s3.port="$s3p" -s3.port.iceberg=0 -s3.port.lance=0 \
    -webdav=false -master.telemetry=false -s3.config="$work/s3.json" >"$work/weed.log" 2>&1 &
  pids+=($!)
  export AWS_ENDPOINT_URL=http://127.0.0.1:$s3p
  for _ in $(seq 1 120); do curl -s -o /dev/null "$AWS_ENDPOINT_URL/" && break; sleep 0.5; done
  local tries=0
  until curl -sf --aws-sigv4 "aws:amz:us-east-1:s3" --user "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" \
    -X PUT "$AWS_ENDPOINT_URL/$4" >/dev/null; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || { cat "$work/weed.log" >&2; return 1; }
    sleep 1
  done
}
