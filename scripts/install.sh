#!/usr/bin/env bash
# Installs ferry with its shell completions and man pages under PREFIX:
#   PREFIX/bin/ferry
#   PREFIX/share/man/man1/ferry*.1
#   PREFIX/share/bash-completion/completions/ferry
#   PREFIX/share/zsh/site-functions/_ferry
#   PREFIX/share/fish/vendor_completions.d/ferry.fish
# Usage: bash scripts/install.sh [PREFIX]      (default: ~/.local; /usr/local needs root)
#        FERRY_BIN=path/to/ferry bash scripts/install.sh PREFIX   (no build)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

prefix=${1:-$HOME/.local}
bin=${FERRY_BIN:-}
if [[ -z $bin ]]; then
    cargo build --release --quiet
    bin=target/release/ferry
fi
if [[ ! -x $bin ]]; then
    echo "error: $bin is not an executable ferry" >&2
    exit 2
fi

install -d "$prefix/bin" "$prefix/share/man/man1" \
    "$prefix/share/bash-completion/completions" \
    "$prefix/share/zsh/site-functions" \
    "$prefix/share/fish/vendor_completions.d"
install -m 0755 "$bin" "$prefix/bin/ferry"
pages=$(mktemp -d)
trap 'rm -rf "$pages"' EXIT
"$prefix/bin/ferry" manpages "$pages" --quiet
install -m 0644 "$pages"/*.1 "$prefix/share/man/man1/"
"$prefix/bin/ferry" completions bash >"$prefix/share/bash-completion/completions/ferry"
"$prefix/bin/ferry" completions zsh >"$prefix/share/zsh/site-functions/_ferry"
"$prefix/bin/ferry" completions fish >"$prefix/share/fish/vendor_completions.d/ferry.fish"
echo "installed ferry into $prefix/bin, its man pages into $prefix/share/man/man1 and" \
    "completions for bash, zsh and fish under $prefix/share"
