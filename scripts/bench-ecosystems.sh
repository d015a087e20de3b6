#!/usr/bin/env bash
# Benchmark: `ferry pull` of each non-image ecosystem against that ecosystem's own client,
# in one run, from the same upstream on loopback, into fresh directories each time.
#
#   bash scripts/bench-ecosystems.sh        (scripts/bench.sh runs it too, BENCH_ECOSYSTEMS)
#
#   wheels  a closure of 30+ real wheels for one target (CPython 3.11, manylinux x86_64):
#           `pip download --only-binary=:all: --platform ... --python-version 3.11
#           --implementation cp --abi cp311 --no-cache-dir` against `ferry pull` of a spec
#           with the same requirements, python-version and platform. The wheels are fetched
#           once (untimed) from the index pip is configured with (PIP_INDEX_URL or pip's
#           config) into BENCH_WHEELS, then served on loopback by scripts/pyindex.py with PEP
#           691 JSON and PEP 658 metadata, as the public index serves them. Without a
#           reachable index and with an empty cache, this row is skipped (said so).
#   conda   a generated channel (scripts/mkconda.py, .conda packages with incompressible
#           payloads; no conda channel is reachable from build machines): one package that
#           depends on all the others. py-rattler's `solve` + `install` into a fresh prefix
#           and cache (its only download path: it also extracts and links) against `ferry
#           pull` of the same spec for the same platform. Served by Python's threaded
#           http.server (absent files are real 404s, as rattler needs).
#   models  a model of BENCH_MODEL_MB MiB in several safetensors shards plus its small
#           files, served by scripts/fakehub.py (the hub's API, LFS files redirected to a
#           CDN origin): `huggingface_hub.snapshot_download` with its default workers and a
#           fresh cache against `ferry pull`.
# Each contender runs BENCH_REPEAT times, alternating which goes first; medians. Each run
# checks that both got the same files (names and bytes).
#
# Environment:
#   BENCH_DIR=/tmp/ferry-bench-eco   work directory (wiped at the start; must be absent,
#                                    empty, or a previous one of this script's)
#   BENCH_REPEAT=3
#   BENCH_WHEELS=target/bench-wheels  the real wheels' cache (kept between runs)
#   BENCH_REQUIREMENTS="flask requests httpx rich pydantic sqlalchemy pyyaml numpy attrs pandas"
#   BENCH_CONDA_PACKAGES=40          packages in the channel (all in the solution)
#   BENCH_CONDA_MB=100               their payload in all, MiB
#   BENCH_MODEL_MB=120               the model's shards in all, MiB (4 shards)
#   BENCH_ONLY=""                    e.g. "wheels models": run only these
#   BENCH_KEEP=0                     1 keeps the work directory
#   FERRY_TEST_VENV                  the venv with pip, py-rattler, huggingface_hub
#                                    (scripts/setup.sh makes it; default target/test-venv)
#
# shellcheck disable=SC2016 # the `bash -c '...' _ ARGS` steps expand their arguments inside
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/ferry-bench-eco}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_WHEELS=${BENCH_WHEELS:-$ROOT/target/bench-wheels}
BENCH_REQUIREMENTS=${BENCH_REQUIREMENTS:-flask requests httpx rich pydantic sqlalchemy pyyaml numpy attrs pandas}
BENCH_CONDA_PACKAGES=${BENCH_CONDA_PACKAGES:-40}
BENCH_CONDA_MB=${BENCH_CONDA_MB:-100}
BENCH_MODEL_MB=${BENCH_MODEL_MB:-120}
BENCH_ONLY=${BENCH_ONLY:-wheels conda models}
BENCH_KEEP=${BENCH_KEEP:-0}
VENV=${FERRY_TEST_VENV:-$ROOT/target/test-venv}
PY=$VENV/bin/python

log() { printf 'bench-ecosystems: %s\n' "$*" >&2; }
die() { printf 'bench-ecosystems: error: %s\n' "$*" >&2; exit 1; }

[[ $BENCH_REPEAT =~ ^[0-9]+$ && $BENCH_REPEAT -ge 1 ]] || die "BENCH_REPEAT must be >= 1"
[[ $BENCH_CONDA_PACKAGES =~ ^[0-9]+$ && $BENCH_CONDA_PACKAGES -ge 2 ]] ||
    die "BENCH_CONDA_PACKAGES must be >= 2"
[[ $BENCH_CONDA_MB =~ ^[0-9]+$ && $BENCH_CONDA_MB -ge 1 ]] || die "BENCH_CONDA_MB must be >= 1"
[[ $BENCH_MODEL_MB =~ ^[0-9]+$ && $BENCH_MODEL_MB -ge 4 ]] || die "BENCH_MODEL_MB must be >= 4"
for e in $BENCH_ONLY; do
    [[ $e =~ ^(wheels|conda|models)$ ]] || die "BENCH_ONLY takes wheels, conda and models"
done
want() { [[ " $BENCH_ONLY " == *" $1 "* ]]; }

if ! "$PY" -c 'import rattler, huggingface_hub, safetensors, numpy' >/dev/null 2>&1 ||
    [[ ! -x /usr/bin/time ]] || ! command -v zstd >/dev/null 2>&1; then
    log "installing the clients (scripts/setup.sh)"
    bash "$ROOT/scripts/setup.sh"
fi
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"

log "building ferry (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
FERRY="$ROOT/target/release/ferry"

MARK=.ferry-bench-ecosystems-workdir
if [[ -e $BENCH_DIR ]]; then
    if [[ -e $BENCH_DIR/$MARK ]]; then
        rm -rf "$BENCH_DIR"
    elif [[ -d $BENCH_DIR && -z $(ls -A "$BENCH_DIR") ]]; then
        rmdir "$BENCH_DIR"
    else
        die "$BENCH_DIR exists and is not a work directory of this script; refusing to wipe it"
    fi
fi
mkdir -p "$BENCH_DIR"
WORK=$(cd "$BENCH_DIR" && pwd)
touch "$WORK/$MARK"

PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ $BENCH_KEEP == 1 ]]; then log "kept $WORK"; else rm -rf "$WORK"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# serve NAME CMD...: starts a server that prints "listening on http://HOST:PORT" on stdout;
# sets URL to that address.
serve() {
    local name=$1 out="$WORK/$1.out" i
    shift
    "$@" >"$out" 2>"$WORK/$name.log" &
    PIDS+=($!)
    for ((i = 0; i < 300; i++)); do
        URL=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$out" | tail -n 1)
        [[ -z $URL ]] || return 0
        kill -0 "${PIDS[-1]}" 2>/dev/null || { cat "$WORK/$name.log" >&2; die "$name exited"; }
        sleep 0.05
    done
    die "$name did not start"
}

# timed NAME CMD...: one sample "NAME wall rss_kib" in $SAMPLES, after a sync.
SAMPLES="$WORK/samples"
: >"$SAMPLES"
timed() {
    local name=$1 tf="$WORK/time.$1" t0 t1 m
    shift
    sync
    t0=$(date +%s.%N)
    /usr/bin/time -f '%M' -o "$tf" "$@"
    t1=$(date +%s.%N)
    m=$(tail -n 1 "$tf")
    awk -v n="$name" -v a="$t0" -v b="$t1" -v m="$m" 'BEGIN { printf "%s %.2f %d\n", n, b - a, m }' \
        >>"$SAMPLES"
}
med() { # med NAME COL
    awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$SAMPLES" | sort -g | awk -v c="$2" '
        { v[NR] = $1 }
        END { if (NR == 0) { print "-"; exit }
              x = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
              if (c == 3) printf "%.0f\n", x / 1024; else printf "%.2f\n", x }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }

# files_of DIR: "name size" of every regular file under DIR, following links, sorted.
files_of() { find -L "$1" -type f -printf '%f %s\n' | sort; }
# present: the items of `ferry pull --dry-run --json` (on stdin) after a pull, as a JSON
# list; every one must be in the store already (a pull that left one out fails here).
present() {
    "$PY" -c 'import json, sys
items = json.load(sys.stdin)["items"]
missing = [i["name"] for i in items if not i["present"]]
if missing:
    sys.exit("not in the store after the pull: " + " ".join(missing))
json.dump(items, sys.stdout)'
}
ok=1
same() { # same WHAT A B: two "name size" listings must be equal
    if ! cmp -s "$2" "$3"; then
        log "MISMATCH ($1): $(diff "$2" "$3" | head -n 5 | tr '\n' ' ')"
        ok=0
    fi
}

ROWS="$WORK/rows" # ecosystem client-label client-sample ferry-sample detail
: >"$ROWS"

# compare ECO LABEL DETAIL CLIENT_FN FERRY_FN CHECK_FN: BENCH_REPEAT alternating runs.
compare() {
    local eco=$1 label=$2 detail=$3 client=$4 fe=$5 check=$6 rep
    for ((rep = 1; rep <= BENCH_REPEAT; rep++)); do
        R="$WORK/$eco-$rep"
        mkdir -p "$R"
        log "$eco run $rep/$BENCH_REPEAT"
        if ((rep % 2)); then "$client"; "$fe"; else "$fe"; "$client"; fi
        "$check"
        [[ $BENCH_KEEP == 1 ]] || rm -rf "$R"
    done
    printf '%s\t%s\t%s\t%s\n' "$eco" "$label" "$detail" "$eco" >>"$ROWS"
}

PLATFORM=manylinux_2_28_x86_64
# pip does not take the lower manylinux levels as compatible with the one it is given
# (PEERS.md): every level is named for it. ferry derives them from the one tag.
PIP_PLATFORMS=()
for ((m = 28; m >= 5; m--)); do PIP_PLATFORMS+=(--platform "manylinux_2_${m}_x86_64"); done
PIP_PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64
    --platform manylinux1_x86_64)
PIP_TARGET=(--only-binary=:all: --python-version 3.11 --implementation cp --abi cp311
    "${PIP_PLATFORMS[@]}")

# --- wheels ------------------------------------------------------------------------------------
wheels_setup() {
    local reqs
    read -r -a reqs <<<"$BENCH_REQUIREMENTS"
    mkdir -p "$BENCH_WHEELS"
    if [[ ! -e $BENCH_WHEELS/.complete || $(cat "$BENCH_WHEELS/.complete") != "$BENCH_REQUIREMENTS" ]]; then
        log "fetching the wheels of: $BENCH_REQUIREMENTS (from pip's configured index, untimed)"
        rm -f "$BENCH_WHEELS"/*.whl "$BENCH_WHEELS/.complete"
        if ! "$VENV/bin/pip" download -q "${PIP_TARGET[@]}" -d "$BENCH_WHEELS" "${reqs[@]}" >&2; then
            log "no index reachable and no cached wheels: the wheels row is skipped"
            return 1
        fi
        echo "$BENCH_REQUIREMENTS" >"$BENCH_WHEELS/.complete"
    fi
    mkdir -p "$WORK/wheels"
    cp "$BENCH_WHEELS"/*.whl "$WORK/wheels/"
    serve pyindex python3 "$ROOT/scripts/pyindex.py" --dir "$WORK/wheels" --quiet
    INDEX="$URL/simple/"
    {
        echo 'name = "bench-wheels"'
        echo
        echo '[[python]]'
        echo "index-url = \"$INDEX\""
        printf 'requirements = [%s]\n' "$(printf '"%s", ' "${reqs[@]}" | sed 's/, $//')"
        echo 'python-version = "3.11"'
        echo "platforms = [\"$PLATFORM\"]"
    } >"$WORK/wheels.toml"
    WHEEL_COUNT=$(find "$WORK/wheels" -name '*.whl' | wc -l)
    WHEEL_BYTES=$(find "$WORK/wheels" -name '*.whl' -printf '%s\n' | awk '{ s += $1 } END { print s }')
}
wheels_client() {
    local reqs
    read -r -a reqs <<<"$BENCH_REQUIREMENTS"
    timed wheels_client "$VENV/bin/pip" download -q --no-cache-dir "${PIP_TARGET[@]}" \
        --index-url "$INDEX" -d "$R/pip" "${reqs[@]}"
}
wheels_ferry() {
    timed wheels_ferry "$FERRY" pull "$WORK/wheels.toml" --store "$R/store" -q
}
wheels_check() {
    (cd "$R/pip" && sha256sum -- *.whl) | awk '{ print $2, "sha256:" $1 }' | sort >"$R/a"
    "$FERRY" pull "$WORK/wheels.toml" --store "$R/store" --dry-run --json -q | present |
        "$PY" -c 'import json, sys
for i in json.load(sys.stdin):
    print(i["name"], i["digest"])' | sort >"$R/b"
    same wheels "$R/a" "$R/b"
    [[ $(wc -l <"$R/b") == "$WHEEL_COUNT" ]] ||
        { log "MISMATCH (wheels): $(wc -l <"$R/b") wheels, not $WHEEL_COUNT"; ok=0; }
}

# --- conda -------------------------------------------------------------------------------------
conda_setup() {
    local ch="$WORK/channel/bench" n=$BENCH_CONDA_PACKAGES i size total=$((BENCH_CONDA_MB * 1048576))
    local deps=() weights=0
    log "generating a channel of $n packages, ${BENCH_CONDA_MB} MiB (untimed)"
    # Sizes 1..n-1 in proportion, like a real closure: a few large, many small.
    for ((i = 1; i < n; i++)); do
        weights=$((weights + i))
        deps+=(--depends "lib$i >=1.0")
    done
    for ((i = 1; i < n; i++)); do
        size=$((total * i / weights))
        printf '%s\0' "$ch" "lib$i" "$size"
    done | xargs -0 -n 3 -P "$(nproc)" sh -c \
        'python3 "$0" "$1" --name "$2" --version 1.0 --format conda --payload-bytes "$3" >/dev/null' \
        "$ROOT/scripts/mkconda.py"
    python3 "$ROOT/scripts/mkconda.py" "$ch" --name app --version 1.0 --format conda \
        "${deps[@]}" >/dev/null
    python3 "$ROOT/scripts/mkconda.py" --index "$ch" >/dev/null
    serve channel python3 -c '
import functools, http.server, sys
class H(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # no 40 ms delayed-ACK stall per kept-alive response
    def log_message(self, *a): pass
srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(H, directory=sys.argv[1]))
print("listening on http://127.0.0.1:%d" % srv.server_address[1], flush=True)
srv.serve_forever()' "$WORK/channel"
    CHANNEL="$URL/bench"
    printf 'name = "bench-conda"\n\n[[conda]]\nchannel = "%s"\nspecs = ["app"]\nplatforms = ["linux-64"]\n' \
        "$CHANNEL" >"$WORK/conda.toml"
    cat >"$WORK/rattler-solve-install.py" <<'EOF'
import asyncio, os, sys
import rattler

async def main(channel, cache, prefix):
    records = await rattler.solve(
        sources=[rattler.Channel(channel)], specs=["app"],
        gateway=rattler.Gateway(cache_dir=cache), platforms=["linux-64", "noarch"],
        virtual_packages=[])
    await rattler.install(records, target_prefix=prefix, cache_dir=cache, show_progress=False)

asyncio.run(main(*sys.argv[1:4]))
sys.stdout.flush()
os._exit(0)  # py-rattler 0.28 can abort at interpreter exit (PEERS.md)
EOF
    CONDA_COUNT=$n
    CONDA_BYTES=$(find "$ch" -name '*.conda' -printf '%s\n' | awk '{ s += $1 } END { print s }')
}
conda_client() {
    timed conda_client "$PY" "$WORK/rattler-solve-install.py" "$CHANNEL" "$R/rattler-cache" "$R/prefix"
}
conda_ferry() {
    timed conda_ferry "$FERRY" pull "$WORK/conda.toml" --store "$R/store" -q
}
conda_check() {
    # rattler keeps what it downloaded only extracted: compare the payloads it installed
    # with the package files ferry stored (by name and count).
    find "$R/prefix/conda-meta" -name '*.json' -printf '%f\n' | sed 's/\.json$/.conda/' | sort >"$R/a"
    "$FERRY" pull "$WORK/conda.toml" --store "$R/store" --dry-run --json -q | present |
        "$PY" -c 'import json, sys
for i in json.load(sys.stdin):
    print(i["name"])' | sort >"$R/b"
    same conda "$R/a" "$R/b"
    [[ $(wc -l <"$R/b") == "$CONDA_COUNT" ]] ||
        { log "MISMATCH (conda): $(wc -l <"$R/b") packages, not $CONDA_COUNT"; ok=0; }
}

# --- models ------------------------------------------------------------------------------------
models_setup() {
    local m="$WORK/model"
    log "generating a model of ${BENCH_MODEL_MB} MiB in 4 shards (untimed)"
    "$PY" "$ROOT/scripts/mkmodel.py" "$m" >/dev/null
    "$PY" - "$m" "$BENCH_MODEL_MB" <<'EOF'
import sys
import numpy as np
from safetensors.numpy import save_file
out, mb = sys.argv[1], int(sys.argv[2])
rng = np.random.default_rng(20261202)
per = mb * 1048576 // 4 // 4  # float32 values per shard
for i in range(4):
    save_file({f"layer.{i}.weight": rng.standard_normal(per, dtype=np.float32)},
              f"{out}/model-{i + 1:05d}-of-00004.safetensors")
EOF
    serve hub python3 "$ROOT/scripts/fakehub.py" --repo "bench/model=$m" --quiet
    HUB=$URL
    printf 'name = "bench-model"\n\n[[model]]\nrepo = "bench/model"\nrevision = "main"\nendpoint = "%s"\n' \
        "$HUB" >"$WORK/model.toml"
    MODEL_COUNT=$(find "$m" -type f | wc -l)
    MODEL_BYTES=$(find "$m" -type f -printf '%s\n' | awk '{ s += $1 } END { print s }')
}
models_client() {
    timed models_client env HF_ENDPOINT="$HUB" HF_HOME="$R/hf" HF_HUB_DISABLE_TELEMETRY=1 \
        HF_HUB_DISABLE_PROGRESS_BARS=1 "$PY" -c '
import sys
from huggingface_hub import snapshot_download
snapshot_download("bench/model", revision="main", cache_dir=sys.argv[1])' "$R/hf/hub"
}
models_ferry() {
    timed models_ferry "$FERRY" pull "$WORK/model.toml" --store "$R/store" -q
}
models_check() {
    files_of "$R/hf/hub/models--bench--model/snapshots" >"$R/a"
    find "$WORK/model" -type f -printf '%f %s\n' | sort >"$R/c"
    same "models, hub client" "$R/c" "$R/a"
    "$FERRY" pull "$WORK/model.toml" --store "$R/store" --dry-run --json -q | present |
        "$PY" -c 'import json, os, sys
for i in json.load(sys.stdin):
    print(os.path.basename(i["name"]), i.get("size", "?"))' | sort >"$R/b"
    same "models, ferry" "$R/c" "$R/b"
}

# --- run ---------------------------------------------------------------------------------------
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }
if want wheels && wheels_setup; then
    compare wheels "pip download" "$WHEEL_COUNT wheels, $(mib "$WHEEL_BYTES") MiB" \
        wheels_client wheels_ferry wheels_check
fi
if want conda; then
    conda_setup
    compare conda "py-rattler solve+install" "$CONDA_COUNT packages, $(mib "$CONDA_BYTES") MiB" \
        conda_client conda_ferry conda_check
fi
if want models; then
    models_setup
    compare models "snapshot_download" "$MODEL_COUNT files, $(mib "$MODEL_BYTES") MiB" \
        models_client models_ferry models_check
fi

echo
echo "ferry pull against each ecosystem's own client: same loopback upstream, fresh store and"
echo "cache each run, median of $BENCH_REPEAT, contenders alternating first; seconds, wall clock;"
echo "peak RSS MiB. ratio = ferry / client (the goal is <= 0.5)"
printf '%-7s %-25s %-24s %8s %6s %8s %6s %6s\n' what client content client rss ferry rss ratio
while IFS=$'\t' read -r eco label detail key; do
    c=$(med "${key}_client" 2) f=$(med "${key}_ferry" 2)
    printf '%-7s %-25s %-24s %8s %6s %8s %6s %6s\n' "$eco" "$label" "$detail" "$c" \
        "$(med "${key}_client" 3)" "$f" "$(med "${key}_ferry" 3)" "$(ratio "$f" "$c")"
done <"$ROWS"
echo "  (py-rattler has no download-only call: its row also extracts and links into a prefix."
echo "   ferry pull resolves, fetches, checks every sha256 and stores, fsyncing each file.)"
"$PY" -c 'import pip, rattler, huggingface_hub as h; print("  pip", pip.__version__, "| huggingface_hub", h.__version__)' 2>/dev/null || true
echo
if [[ $ok == 1 ]]; then
    echo "correct: in every run both contenders got the same files"
else
    echo "INCORRECT: see the messages above"
fi
echo "run time ${SECONDS}s"
[[ $ok == 1 ]]
