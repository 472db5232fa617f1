#!/usr/bin/env bash
# docs/FORMAT.md is generated from the //! spec in src/image/mod.rs (the single source of
# truth); tests/image_format.rs fails when they drift.
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Lifeboat image format"
  echo
  echo "<!-- generated from src/image/mod.rs by scripts/update-format-doc.sh; do not edit -->"
  echo
  sed -n 's|^//! \{0,1\}||p' src/image/mod.rs
} > docs/FORMAT.md
echo "docs/FORMAT.md updated"
