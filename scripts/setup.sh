#!/usr/bin/env bash
# Install the real peers the test suite runs against (Debian bookworm packages).
# Idempotent and silent when everything is already installed.
set -euo pipefail

packages=(docker-registry skopeo umoci podman runc minisign zstd curl apache2-utils)

missing=()
for pkg in "${packages[@]}"; do
    status=$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)
    if [[ "$status" != "installed" ]]; then
        missing+=("$pkg")
    fi
done

# scripts/mkimage.py (test images) needs a Python 3 interpreter, any source will do.
if ! command -v python3 >/dev/null 2>&1; then
    missing+=(python3)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing packages: ${missing[*]}" >&2
    echo "hint: this script needs apt-get (Debian bookworm); install them by hand" >&2
    exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo=(sudo)
    else
        echo "error: missing packages: ${missing[*]}, and not running as root" >&2
        echo "hint: run scripts/setup.sh as root" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
echo "setup: installing ${missing[*]}" >&2
if ! "${sudo[@]}" apt-get update -qq >&2; then
    echo "error: apt-get update failed" >&2
    echo "hint: check network access to the Debian mirror and /etc/apt/sources.list" >&2
    exit 1
fi
if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2; then
    echo "error: apt-get install failed for: ${missing[*]}" >&2
    echo "hint: see the apt-get output above" >&2
    exit 1
fi
