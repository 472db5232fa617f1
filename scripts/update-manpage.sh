#!/usr/bin/env bash
# Regenerates docs/lifeboat.1 from the clap definition (src/cli/args.rs). The generator is the
# test tests/manpage.rs, which otherwise fails when docs/lifeboat.1 and the CLI drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
LIFEBOAT_UPDATE_MANPAGE=1 cargo test --quiet --locked --test manpage manpage_matches_cli
echo "docs/lifeboat.1 updated"
