#!/usr/bin/env bash
# Install the real peers the test suite runs against: Debian bookworm packages, and a
# venv with pip, uv and pypiserver for the Python tests, py-rattler for the conda tests
# and huggingface_hub, safetensors and numpy for the model tests ($FERRY_TEST_VENV,
# default target/test-venv). Idempotent and silent when everything is already installed.
set -euo pipefail

# chromium renders `ferry report`'s page headless in the report tests.
packages=(docker-registry skopeo umoci podman runc minisign zstd curl apache2-utils openssl chromium)

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

install_packages() {
    if [[ $# -eq 0 ]]; then
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: missing packages: $*" >&2
        echo "hint: this script needs apt-get (Debian bookworm); install them by hand" >&2
        exit 1
    fi
    local sudo=()
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "error: missing packages: $*, and not running as root" >&2
            echo "hint: run scripts/setup.sh as root" >&2
            exit 1
        fi
    fi
    echo "setup: installing $*" >&2
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2; then
        echo "error: apt-get update failed" >&2
        echo "hint: check network access to the Debian mirror and /etc/apt/sources.list" >&2
        exit 1
    fi
    if ! "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "$@" >&2; then
        echo "error: apt-get install failed for: $*" >&2
        echo "hint: see the apt-get output above" >&2
        exit 1
    fi
}

install_packages "${missing[@]}"

# The Python clients of the wheel tests (pip, uv), the PyPI-compatible server that
# `ferry export python --upload` is tested against (pypiserver), the conda client of the
# conda tests (py-rattler, imported as `rattler`), and the Hugging Face
# client of the model tests (huggingface_hub, with safetensors and numpy to make and load
# the test model) live in a venv of their own, so a global pip is never upgraded. pip
# installs them with its own configuration (PIP_INDEX_URL, pip.conf): no index is named
# here.
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${FERRY_TEST_VENV:-$repo/target/test-venv}

# The demo needs only the Debian peers: FERRY_SETUP_VENV=0 skips the test clients.
if [[ "${FERRY_SETUP_VENV:-1}" == "0" ]]; then
    exit 0
fi

venv_ok() {
    [[ -x "$venv/bin/python" ]] &&
        "$venv/bin/python" -c 'import sys' >/dev/null 2>&1 &&
        "$venv/bin/uv" --version >/dev/null 2>&1 &&
        "$venv/bin/pypi-server" --help >/dev/null 2>&1 &&
        "$venv/bin/python" -c 'import huggingface_hub, safetensors, numpy' >/dev/null 2>&1 &&
        "$venv/bin/python" -c 'import rattler' >/dev/null 2>&1 &&
        "$venv/bin/python" -c 'import cyclonedx.validation.json, jsonschema, spdx_tools' >/dev/null 2>&1
}

# The SBOM tests validate ferry's documents with the CycloneDX and SPDX projects' own
# Python libraries (cyclonedx-python-lib with its JSON schema validation, spdx-tools).
venv_packages=(uv pypiserver py-rattler huggingface_hub safetensors numpy
    'cyclonedx-python-lib[json-validation]' spdx-tools)

if ! venv_ok; then
    if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
        install_packages python3-venv
    fi
    # A broken venv is made again from scratch (pip would keep a damaged install); a
    # working one that only lacks some packages gets them added.
    if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" && -n "$(ls -A "$venv" 2>/dev/null)" ]]; then
        echo "error: $venv exists and is not a venv" >&2
        echo "hint: point FERRY_TEST_VENV at a new directory, or remove $venv" >&2
        exit 1
    fi
    if ! { [[ -x "$venv/bin/python" && -x "$venv/bin/pip" ]] &&
        "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; }; then
        echo "setup: creating the test venv at $venv" >&2
        rm -rf "$venv"
        mkdir -p "$(dirname "$venv")"
        if ! python3 -m venv "$venv" >&2; then
            echo "error: python3 -m venv $venv failed" >&2
            echo "hint: install Debian's python3-venv (apt-get install python3-venv)" >&2
            exit 1
        fi
    fi
    echo "setup: installing ${venv_packages[*]} into $venv" >&2
    if ! "$venv/bin/pip" install -q --disable-pip-version-check "${venv_packages[@]}" >&2; then
        echo "error: pip install ${venv_packages[*]} failed" >&2
        echo "hint: pip needs a reachable package index: set PIP_INDEX_URL or pip's config" >&2
        exit 1
    fi
    if ! venv_ok; then
        echo "error: the test venv at $venv lacks a working uv, pypi-server," \
            "rattler (py-rattler), huggingface_hub, safetensors, numpy, cyclonedx-python-lib" \
            "or spdx-tools" >&2
        echo "hint: remove $venv and run scripts/setup.sh again" >&2
        exit 1
    fi
fi
