#!/usr/bin/env bash
# The project's test command: `bash scripts/test.sh [extra cargo test args]`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# The fuzz targets are not part of ferry's build; checking them here (stable toolchain,
# no sanitizer, a few minutes cold) keeps them compiling as the reader's API changes.
# Running them is scripts/fuzz.sh's job.
cargo check --manifest-path fuzz/Cargo.toml --bins --locked
cargo test --release "$@"
# The README's first command, as a user runs it: the whole mission against the real
# clients (about 15 s once built). Skipped when only some tests were asked for.
if [[ $# -eq 0 ]]; then
    DEMO_DIR=target/demo bash scripts/demo.sh >/dev/null
fi
