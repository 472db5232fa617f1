#!/usr/bin/env bash
# Install Debian packages, waiting for the dpkg lock (shared machines) and retrying once.
# Usage: .ci/apt.sh pkg...   Skips apt entirely when every package is already installed.
set -euo pipefail
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
export DEBIAN_FRONTEND=noninteractive
apt_run() {
  apt-get -o DPkg::Lock::Timeout=600 update -qq &&
    apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
}
echo "apt: installing ${missing[*]}"
apt_run || { echo "apt: first attempt failed, retrying in 10 s" >&2; sleep 10; apt_run; }
