#!/usr/bin/env bash
# The project's test command: `bash scripts/test.sh [extra cargo test args]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test --release "$@"
