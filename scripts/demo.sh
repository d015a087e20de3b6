#!/usr/bin/env bash
# The main job end to end, offline, on the embedded default:
#   key -> bundle (from the OCI layout in fixtures/) -> verify -> import into a store
#   -> ferry serve -> a real client (skopeo, and podman when present) pulls from it.
# Usage: bash scripts/demo.sh        (work files go to ${DEMO_DIR:-.ferry-demo})
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

FERRY_SETUP_VENV=0 bash scripts/setup.sh
cargo build --release --quiet
ferry=$root/target/release/ferry

work=${DEMO_DIR:-$root/.ferry-demo}
rm -rf "$work"
mkdir -p "$work"
cd "$work"

step() { printf '\n\033[1m$ %s\033[0m\n' "$*" >&2; "$@"; }

cat > ferry.toml <<TOML
name = "demo"

[[image]]
ref = "oci:$root/fixtures/demo-layout:app/web:1.0"
TOML

step "$ferry" key generate team
step "$ferry" bundle create ferry.toml -o app.ferry --key team.key --store connected-store
step "$ferry" bundle inspect app.ferry
step "$ferry" bundle verify app.ferry --trust team.pub
step "$ferry" import app.ferry --trust team.pub --store srv

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$ferry" serve --store srv --listen "127.0.0.1:$port" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
    curl -sf "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
    sleep 0.1
done

want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' "$root/fixtures/demo-layout/index.json")
got=sha256:$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/app/web:1.0" | sha256sum | cut -d' ' -f1)
step skopeo copy --all --src-tls-verify=false "docker://127.0.0.1:$port/app/web:1.0" "oci:$work/pulled:app/web:1.0"
if command -v podman >/dev/null 2>&1; then
    step podman pull --tls-verify=false "127.0.0.1:$port/app/web:1.0"
    podman rmi -f "127.0.0.1:$port/app/web:1.0" >/dev/null 2>&1 || true
fi

echo
echo "source digest  $want"
echo "served digest  $got"
if [[ "$want" != "$got" ]]; then
    echo "error: the served image does not have the source digest" >&2
    exit 1
fi
echo "demo: OK (files in $work)"
