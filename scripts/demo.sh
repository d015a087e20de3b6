#!/usr/bin/env bash
# The whole mission end to end, offline, on the embedded default:
#
#   connected side   upstreams on loopback: an OCI layout from fixtures/ (image), a Python
#                    index (two wheels), a conda channel (two packages), a Hugging Face hub
#                    stand-in (a small model); all made here by scripts/mk*.py
#                    -> one spec -> `bundle create` signed by a builder, gated by
#                    policies/default.rego -> an approver co-signs
#   the air gap      the bundle and its co-signature are copied to "media"
#   isolated side    a trust policy (builder + approver) -> verify (and the refusal of the
#                    same bundle without its approval) -> import into a store, gated by
#                    the same Rego policy -> `ferry serve` -> podman (or skopeo), pip,
#                    py-rattler and huggingface_hub pull from it, unmodified, and what each
#                    got is compared with the source -> the audit chain is checked and the
#                    report written
#
# Usage: bash scripts/demo.sh        (work files go to ${DEMO_DIR:-.ferry-demo}; wiped first)
# The clients come from scripts/setup.sh (Debian packages, and pip, py-rattler and
# huggingface_hub in target/test-venv from pip's own configuration); nothing else is fetched.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

bash scripts/setup.sh
cargo build --release --quiet
venv=${FERRY_TEST_VENV:-$root/target/test-venv}
# ferry, and the venv's python and pip, by their plain names in what the demo prints.
export PATH=$root/target/release:$venv/bin:$PATH

work=${DEMO_DIR:-$root/.ferry-demo}
mark=.ferry-demo-workdir
if [[ -e $work && ! -e $work/$mark && -n $(ls -A "$work" 2>/dev/null) ]]; then
    echo "demo: $work exists and is not a work directory of this script; refusing to wipe it" >&2
    exit 1
fi
rm -rf "$work"
mkdir -p "$work"
work=$(cd "$work" && pwd)
touch "$work/$mark"
cd "$work"

# Nothing on this machine's configuration may reach the run: pip, conda, uv and the hub
# client see only what the demo names.
export PIP_CONFIG_FILE=/dev/null PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
unset PIP_INDEX_URL PIP_EXTRA_INDEX_URL HF_ENDPOINT HF_TOKEN FERRY_STORE
export HF_HUB_DISABLE_TELEMETRY=1 HF_HUB_DISABLE_PROGRESS_BARS=1 HOME=$work/home
mkdir -p "$HOME"

started=$SECONDS
bold=$'\033[1m' off=$'\033[0m'
[[ -t 2 ]] || bold='' off=''
section() { printf '\n%s== %s ==%s\n' "$bold" "$*" "$off" >&2; }
proves() { printf '\n# %s\n' "$*" >&2; }
step() { printf '%s$ %s%s\n' "$bold" "$*" "$off" >&2; "$@"; }
fail() { echo "demo: FAILED: $*" >&2; exit 1; }

pids=()
cleanup() {
    local pid
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT

# background NAME CMD...: starts a server that prints "listening on http://HOST:PORT";
# sets URL to that address.
background() {
    local name=$1 i
    shift
    "$@" >"$name.out" 2>"$name.log" &
    pids+=($!)
    for ((i = 0; i < 200; i++)); do
        URL=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$name.out" | tail -n 1)
        [[ -z $URL ]] || return 0
        kill -0 "${pids[-1]}" 2>/dev/null || { cat "$name.log" >&2; fail "$name exited"; }
        sleep 0.05
    done
    fail "$name did not start"
}

section "connected side: upstreams on loopback"
proves "every ecosystem comes from a real protocol peer: an OCI layout, a PEP 691 index, a conda channel, the hub's API"
mkdir -p upstream/wheels upstream/channels/demo upstream/model
python3 "$root/scripts/mkwheel.py" upstream/wheels --name demo-app --version 1.0 \
    --requires "demo-util>=1.0" --import demo_util --summary "the app the demo installs" >/dev/null
python3 "$root/scripts/mkwheel.py" upstream/wheels --name demo-util --version 1.2 >/dev/null
python3 "$root/scripts/mkconda.py" upstream/channels/demo --name app --version 1.0 \
    --format conda --depends "libdemo >=1.0" --script app >/dev/null
python3 "$root/scripts/mkconda.py" upstream/channels/demo --name libdemo --version 1.1 \
    --subdir noarch >/dev/null
python3 "$root/scripts/mkconda.py" --index upstream/channels/demo >/dev/null
python "$root/scripts/mkmodel.py" upstream/model >/dev/null
background pyindex python3 "$root/scripts/pyindex.py" --dir upstream/wheels --quiet
index=$URL/simple/
background channel python3 -c '
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print("listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()' upstream/channels
channel=$URL/demo
background hub python3 "$root/scripts/fakehub.py" --repo "demo/tiny-bert=upstream/model" --quiet
hub=$URL
echo "image   oci:$root/fixtures/demo-layout (app/web:1.0, two platforms)" >&2
echo "python  $index (demo-app 1.0 -> demo-util 1.2)" >&2
echo "conda   $channel (app 1.0 -> libdemo 1.1, noarch)" >&2
echo "model   $hub (demo/tiny-bert)" >&2

cat >mission.toml <<TOML
name = "demo"

[[image]]
ref = "oci:$root/fixtures/demo-layout:app/web:1.0"

[[python]]
index-url = "$index"
requirements = ["demo-app==1.0"]
python-version = "3.11"
platforms = ["manylinux_2_28_x86_64"]

[[conda]]
channel = "$channel"
specs = ["app 1.0"]
platforms = ["linux-64"]

[[model]]
repo = "demo/tiny-bert"
revision = "main"
endpoint = "$hub"
TOML

proves "keys: Ed25519, secret halves written 0600; the builder signs, the approver co-signs"
step ferry key generate builder
step ferry key generate approver

proves "create resolves every closure, hashes every byte, gates it with the Rego policy (exit 4, no bundle, on a deny) and signs the manifest"
step ferry bundle create mission.toml -o mission.ferry --key builder.key \
    --store connected-store --policy "$root/policies/default.rego"

proves "the gate is real: the same policy with loopback taken off its allowed hosts denies (exit 4) and writes no bundle"
sed 's/^allowed_hosts := .*/allowed_hosts := {"mirror.example.internal"}/' \
    "$root/policies/default.rego" >strict.rego
set +e
ferry bundle create mission.toml -o denied.ferry --key builder.key --store connected-store \
    --policy strict.rego -q 2>denied.txt
code=$?
set -e
sed 's/^/  /' denied.txt >&2
[[ $code == 4 ]] || fail "the strict policy did not deny (exit $code, not 4)"
[[ ! -e denied.ferry ]] || fail "a denied create left denied.ferry behind"

proves "an approver co-signs the same manifest bytes without touching the bundle (a minisign signature beside it)"
step ferry bundle sign mission.ferry --key approver.key
step ferry bundle inspect mission.ferry

section "the air gap"
proves "only the bundle and its co-signature cross; the isolated side holds public keys only"
mkdir -p media isolated
step cp mission.ferry mission.ferry.*.minisig media/
cp builder.pub approver.pub isolated/
cat >isolated/trust.toml <<'TOML'
[keys.builder]
key = "builder.pub"
role = "builder"
[keys.approver]
key = "approver.pub"
role = "approver"

[[rule]]
series = "demo"
require = { builder = 1, approver = 1 }
max-age = "30d"
TOML

section "isolated side"
proves "the trust policy refuses the bundle that arrives without its approval (exit 3), naming the role that is missing"
mkdir -p media/unapproved
cp mission.ferry media/unapproved/
set +e
ferry bundle verify media/unapproved/mission.ferry --trust-policy isolated/trust.toml 2>refused.txt
code=$?
set -e
sed 's/^/  /' refused.txt >&2
[[ $code == 3 ]] || fail "an unapproved bundle verified (exit $code, not 3)"

proves "with builder and approver it verifies: every entry against the signed manifest, before a byte lands"
step ferry bundle verify media/mission.ferry --trust-policy isolated/trust.toml

proves "import checks signatures, the site's Rego gate and every digest before anything is visible; the audit log records who approved"
step ferry import media/mission.ferry --trust-policy isolated/trust.toml \
    --policy "$root/policies/default.rego" --store isolated/store

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
served=http://127.0.0.1:$port
proves "one read-only server speaks OCI distribution, PEP 691/503, conda repodata and the hub API from that store"
printf '%s$ %s%s\n' "$bold" "ferry serve --store isolated/store --listen 127.0.0.1:$port &" "$off" >&2
ferry serve --store isolated/store --listen "127.0.0.1:$port" --quiet 2>serve.log &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "$served/healthz" >/dev/null 2>&1 && break
    sleep 0.05
done
curl -sf "$served/healthz" >/dev/null || { cat serve.log >&2; fail "ferry serve did not start"; }

section "unmodified clients pull from ferry serve"
proves "container image: the digest served is the digest of the source"
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["manifests"][0]["digest"])' \
    "$root/fixtures/demo-layout/index.json")
got=sha256:$(skopeo inspect --raw --tls-verify=false "docker://127.0.0.1:$port/app/web:1.0" | sha256sum | cut -d' ' -f1)
if command -v podman >/dev/null 2>&1; then
    step podman --root "$work/podman/root" --runroot "$work/podman/run" --storage-driver vfs \
        pull -q --tls-verify=false "127.0.0.1:$port/app/web:1.0"
else
    step skopeo copy -q --all --src-tls-verify=false "docker://127.0.0.1:$port/app/web:1.0" \
        "oci:$work/pulled:app/web:1.0"
fi
echo "source digest  $want" >&2
echo "served digest  $got" >&2
[[ $want == "$got" ]] || fail "the served image does not have the source digest"

proves "Python: pip resolves the closure from ferry's index and the installed code runs"
step pip install -q --no-cache-dir --index-url "$served/simple/" \
    --target site demo-app==1.0
PYTHONPATH=site step python -c 'import demo_app, demo_util; print("demo_app", demo_app.__version__, "demo_util", demo_util.__version__)'

proves "conda: py-rattler solves from ferry's channel, installs, and the package's program runs"
cat >rattler-install.py <<'EOF'
import asyncio, os, sys
import rattler
async def main(channel, prefix, cache):
    records = await rattler.solve(sources=[rattler.Channel(channel)], specs=["app"],
        gateway=rattler.Gateway(cache_dir=cache), platforms=["linux-64", "noarch"],
        virtual_packages=[])
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)
    print("installed", " ".join(sorted(r.file_name for r in records)))
asyncio.run(main(*sys.argv[1:4]))
sys.stdout.flush()
os._exit(0)  # py-rattler 0.28 can abort while the interpreter finalises (PEERS.md)
EOF
step python rattler-install.py "$served/conda/demo" prefix rattler-cache
step prefix/bin/app

proves "model: huggingface_hub downloads the snapshot from ferry serve; every file equals the source"
cat >hf-download.py <<'EOF'
import sys
from huggingface_hub import snapshot_download
print(snapshot_download("demo/tiny-bert", cache_dir=sys.argv[1]))
EOF
snapshot=$(HF_ENDPOINT=$served step python hf-download.py hf-cache)
(cd upstream/model && find . -type f -exec sha256sum {} + | sort -k 2) >model.want
(cd "$snapshot" && find -L . -type f -exec sha256sum {} + | sort -k 2) >model.got
cmp -s model.want model.got || { diff model.want model.got >&2; fail "the model served differs from the source"; }
echo "$(wc -l <model.got) files, each byte-identical to the hub's" >&2

section "evidence"
proves "the audit log's hash chain is intact; the report says what crossed, when, and who approved it"
step ferry audit verify --store isolated/store
step ferry report --store isolated/store -o report

echo >&2
echo "demo: OK in $((SECONDS - started))s (after the build); files in $work" >&2
echo "report: $work/report/report.html"
