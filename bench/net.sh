#!/usr/bin/env bash
# Network-store benchmark (issue 19): restoring from a web server and imaging to an SFTP
# store, each against the same job on local files, in one run, on loopback.
#
# Usage: sudo bench/net.sh DISK_IMAGE [--runs N] [--work DIR] [--keep]
#
#   --runs N    rounds; each round times every row once, in a rotated order; the report
#               gives medians and the ratio of the medians (default 3)
#   --work DIR  where the images and the target go (default: a new dir in /var/tmp)
#   --keep      keep the work directory
#   LIFEBOAT    the binary (default target/release/lifeboat)
#
# Setup: lifeboat image DISK -o WORK/www/d.lbi; nginx serves WORK/www on 127.0.0.1 over HTTP
# and HTTPS (a CA made here, passed with --ca); sshd (its own config and keys) serves WORK
# over SFTP to sshfs. Rows (the page cache is dropped before each; wall seconds):
#   restore local   lifeboat restore WORK/www/d.lbi WORK/t.img --yes
#   restore http    the same image from http://127.0.0.1:PORT/d.lbi
#   restore https   from https://127.0.0.1:PORT/d.lbi --ca WORK/ca.pem
#   image local     lifeboat image DISK -o WORK/i.lbi
#   image sftp      lifeboat image DISK -o sftp://root@127.0.0.1:PORT/WORK/s/i.lbi
# Targets: restore http >= 0.80 x the speed of restore local (time <= 1.25 x); image sftp
# >= 0.80 x image local. SMB and NFS need kernel clients this host lacks: see the QEMU
# test (tests/qemu_e2e.rs) for their round trips.
# Output: a Markdown report on stdout and in bench/results/net-DATE.md.
set -euo pipefail
export LC_ALL=C
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
usage() { sed -n '5,10p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
rows_args 3 "$@"
lb=${LIFEBOAT:-$repo/target/release/lifeboat}
[ -x "$lb" ] || { echo "net.sh: $lb not built (cargo build --release)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "net.sh: run as root (drop_caches, sshd)" >&2; exit 1; }
for t in nginx sshd sshfs openssl; do
  command -v "$t" >/dev/null || { echo "net.sh: $t missing (.ci/install-deps.sh)" >&2; exit 1; }
done
[ -n "$work" ] || work=$(mktemp -d /var/tmp/lifeboat-net.XXXXXX)
mkdir -p "$work/www" "$work/s" "$work/mnt"
pids=()
cleanup() {
  mountpoint -q "$work/mnt" && umount "$work/mnt" || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [ "$keep" = 1 ] || rm -rf "$work"
}
trap cleanup EXIT
freeport() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "net.sh: imaging $disk" >&2
"$lb" image "$disk" -o "$work/www/d.lbi" >/dev/null 2>&1
size=$(stat -c %s "$disk")

# nginx, HTTP and HTTPS, with a CA of our own
(
  cd "$work"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=bench-ca \
    -addext basicConstraints=critical,CA:TRUE 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=127.0.0.1 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\n' > ext
  openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out srv.pem -days 2 \
    -extfile ext 2>/dev/null
)
hp=$(freeport) sp=$(freeport)
cat > "$work/nginx.conf" <<EOF
daemon off; pid $work/nginx.pid; error_log $work/nginx.err; worker_processes 2;
events {}
http { access_log off; sendfile on;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work;
  uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$hp; root $work/www; }
  server { listen 127.0.0.1:$sp ssl; ssl_certificate $work/srv.pem; ssl_certificate_key $work/srv.key; root $work/www; } }
EOF
nginx -c "$work/nginx.conf" & pids+=($!)

# sshd with its own keys, root by key, and sshfs onto WORK/mnt
shp=$(freeport)
ssh-keygen -q -t ed25519 -N '' -f "$work/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$work/userkey"
mkdir -p /root/.ssh /run/sshd
cat > "$work/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $shp
HostKey $work/hostkey
PidFile $work/sshd.pid
AuthorizedKeysFile $work/userkey.pub
PermitRootLogin prohibit-password
StrictModes no
PasswordAuthentication no
UsePAM no
Subsystem sftp internal-sftp
EOF
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.log" & pids+=($!)
sleep 1
printf 'identity=%s\nhost_key=%s\n' "$work/userkey" "$(cut -d' ' -f1,2 "$work/hostkey.pub")" > "$work/sftp.creds"

fresh_target() { rm -f "$work/t.img"; fallocate -l "$size" "$work/t.img"; }

row_restore_local() { fresh_target; drop; timed "$lb" restore "$work/www/d.lbi" "$work/t.img" --yes; }
row_restore_http() { fresh_target; drop; timed "$lb" restore "http://127.0.0.1:$hp/d.lbi" "$work/t.img" --yes; }
row_restore_https() { fresh_target; drop; timed "$lb" --ca "$work/ca.pem" restore "https://127.0.0.1:$sp/d.lbi" "$work/t.img" --yes; }
row_image_local() { rm -f "$work/i.lbi"; drop; timed "$lb" image "$disk" -o "$work/i.lbi"; }
row_image_sftp() {
  rm -f "$work/s/i.lbi"; drop
  timed "$lb" --credentials "$work/sftp.creds" image "$disk" -o "sftp://root@127.0.0.1:$shp$work/s/i.lbi"
}
rows=(restore_local restore_http restore_https image_local)
if "$lb" image --help | grep -q 'sftp://'; then rows+=(image_sftp); fi

declare -A times
rows_run net.sh
report=$(rows_report \
  "Network stores, disk $disk ($size bytes), image $(stat -c %s "$work/www/d.lbi") bytes, $runs rounds" \
  "restore_local:restore_http:restore from HTTP, the local speed (target >= 0.80)" \
  "restore_local:restore_https:restore from HTTPS, the local speed" \
  "image_local:image_sftp:image to SFTP, the local speed (target >= 0.80)")
echo "$report"
mkdir -p "$here/results"
echo "$report" > "$here/results/net-$(date -u +%Y-%m-%d).md"
