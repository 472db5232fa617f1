#!/usr/bin/env bash
# Regenerates the Usage section of README.md from the binary's --help texts.
# tests/cli.rs fails when README.md and the --help output drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --locked
bin=target/debug/lifeboat
python3 - "$bin" <<'PY'
import re, subprocess, sys
bin = sys.argv[1]
def help(*args):
    return subprocess.run([bin, *args, "--help"], check=True, capture_output=True, text=True).stdout.rstrip()
parts = ["```text\n$ lifeboat --help\n" + help() + "\n```"]
for sub in ["list", "inspect"]:
    parts.append(f"```text\n$ lifeboat {sub} --help\n" + help(sub) + "\n```")
body = "\n\n".join(parts)
text = open("README.md").read()
new = re.sub(r"(<!-- usage:start[^\n]*-->\n).*?(<!-- usage:end -->)", lambda m: m.group(1) + body + "\n" + m.group(2), text, flags=re.S)
open("README.md", "w").write(new)
PY
echo "README.md usage section updated"
