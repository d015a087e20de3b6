#!/usr/bin/env bash
# Benchmark: ferry against the skopeo + tar + zstd pipeline that does the same job, in one
# run on one machine, against real loopback registries (Debian's docker-registry).
#
#   bash scripts/bench.sh
#
# Export side: source registry -> one archive file.  Import side: archive -> a FRESH registry.
#   skopeo pipeline  export: skopeo copy --all --preserve-digests (each image) into one OCI
#                            layout, then tar | zstd -T0 (level 3)
#                    import: zstd -dc | tar -x, then skopeo copy (each image) to the registry
#   ferry            export: ferry bundle create (fresh empty store: pulls, signs, writes)
#                    import: ferry import --to (verifies everything before writing, fsyncs)
#   floor            export: a plain GET of every distinct blob and manifest to a file, 4 at
#                            a time (curl); no hashing, no archive, no signature
#                    import: POST + PUT of each blob (cross-repository mounts for the
#                            others), 4 at a time, then the manifests and tags. What moving
#                            the bytes costs on this machine: no tool can go below it
#                            (scripts/floor-plan.py lists what to move, untimed)
# Image generation and the push into the source registry are not timed. Each repetition
# uses fresh output directories, a fresh store and fresh target registries (a registry that
# already holds a blob would make the push a no-op), and alternates which contender goes
# first; the tables show medians over the repetitions.
#
# Environment:
#   BENCH_DIR=/tmp/ferry-bench  work directory (wiped at the start; must be absent, empty, or
#                               a previous bench directory)
#   BENCH_MB=300                compressed content, MiB (approximately)
#   BENCH_IMAGES=4              images (each an index over BENCH_PLATFORMS)
#   BENCH_PLATFORMS=linux/amd64,linux/arm64/v8
#   BENCH_REPEAT=3              repetitions of the timed comparison (medians are reported)
#   BENCH_PHASES=1              also time ferry's phases once (pull alone, create with a warm
#                               store, bundle verify, import into a store); 0 skips them
#   BENCH_SCALES=""             e.g. "150 300 600": also run the ferry side alone at these
#                               sizes (MiB) and print time and peak RSS per size
#   BENCH_MEMORY=0              1 also runs the memory section (after the rest), "only" runs
#                               nothing else: peak RSS of bundle create, bundle verify,
#                               import --store and import --to for a small and a large bundle
#                               (few large blobs) and for few and many small blobs, and the
#                               peak extra disk of import --to. Needs about 3x the large size
#                               in free disk under BENCH_DIR and a few minutes (2 GiB case)
#   BENCH_MEMORY_MB="200 2000"  the small and the large bundle (MiB, 4 layers each)
#   BENCH_MEMORY_BLOBS="10 10000"  the few- and many-blob cases (both carry the larger count x 1 KiB)
#   BENCH_MEMORY_LIMIT=64       the peak RSS (MiB) every command must stay under
#   BENCH_ECOSYSTEMS=1          also run scripts/bench-ecosystems.sh (wheels, conda and models
#                               against pip, py-rattler and huggingface_hub; BENCH_REPEAT
#                               repetitions); 0 skips it, "only" runs nothing else
#   BENCH_KEEP=0                1 keeps the work directory
#
# Loopback only: every registry listens on 127.0.0.1 on a free port and is stopped by its
# own PID on exit.
#
# shellcheck disable=SC2016 # the `bash -c '...' _ ARGS` steps expand their arguments inside
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-/tmp/ferry-bench}
BENCH_MB=${BENCH_MB:-300}
BENCH_IMAGES=${BENCH_IMAGES:-4}
BENCH_PLATFORMS=${BENCH_PLATFORMS:-linux/amd64,linux/arm64/v8}
BENCH_REPEAT=${BENCH_REPEAT:-3}
BENCH_PHASES=${BENCH_PHASES:-1}
BENCH_SCALES=${BENCH_SCALES:-}
BENCH_KEEP=${BENCH_KEEP:-0}
BENCH_MEMORY=${BENCH_MEMORY:-0}
BENCH_MEMORY_MB=${BENCH_MEMORY_MB:-200 2000}
BENCH_MEMORY_BLOBS=${BENCH_MEMORY_BLOBS:-10 10000}
BENCH_MEMORY_LIMIT=${BENCH_MEMORY_LIMIT:-64}
BENCH_ECOSYSTEMS=${BENCH_ECOSYSTEMS:-1}

log() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[[ $BENCH_MB =~ ^[0-9]+$ && $BENCH_MB -ge 8 ]] || die "BENCH_MB must be an integer >= 8"
[[ $BENCH_IMAGES =~ ^[0-9]+$ && $BENCH_IMAGES -ge 1 ]] || die "BENCH_IMAGES must be >= 1"
[[ $BENCH_REPEAT =~ ^[0-9]+$ && $BENCH_REPEAT -ge 1 ]] || die "BENCH_REPEAT must be >= 1"
[[ $BENCH_MEMORY =~ ^(0|1|only)$ ]] || die "BENCH_MEMORY must be 0, 1 or only"
[[ $BENCH_ECOSYSTEMS =~ ^(0|1|only)$ ]] || die "BENCH_ECOSYSTEMS must be 0, 1 or only"
[[ $BENCH_ECOSYSTEMS != only || $BENCH_MEMORY != only ]] ||
    die "BENCH_ECOSYSTEMS=only and BENCH_MEMORY=only exclude each other"
[[ $BENCH_MEMORY_MB =~ ^[0-9]+\ [0-9]+$ ]] || die "BENCH_MEMORY_MB must be two sizes in MiB"
[[ $BENCH_MEMORY_BLOBS =~ ^[0-9]+\ [0-9]+$ ]] || die "BENCH_MEMORY_BLOBS must be two counts"
[[ $BENCH_MEMORY_LIMIT =~ ^[0-9]+$ ]] || die "BENCH_MEMORY_LIMIT must be an integer (MiB)"
for s in $BENCH_SCALES; do
    [[ $s =~ ^[0-9]+$ && $s -ge 8 ]] || die "BENCH_SCALES entries must be integers >= 8 (MiB)"
done

# --- tools ---------------------------------------------------------------------------------
need_setup=0
for t in docker-registry skopeo zstd curl; do
    command -v "$t" >/dev/null 2>&1 || need_setup=1
done
if [[ $need_setup == 1 ]]; then
    log "installing the peers (scripts/setup.sh)"
    bash "$ROOT/scripts/setup.sh"
fi
if [[ ! -x /usr/bin/time ]]; then
    log "installing Debian's time package"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends time >&2
fi
for t in docker-registry skopeo zstd tar curl python3 awk sort; do
    command -v "$t" >/dev/null 2>&1 || die "$t is missing"
done
[[ -x /usr/bin/time ]] || die "/usr/bin/time is missing (apt-get install time)"

log "building ferry (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet)
FERRY="$ROOT/target/release/ferry"
[[ -x $FERRY ]] || die "no binary at $FERRY"

# --- work directory and cleanup ------------------------------------------------------------
MARK=.ferry-bench-workdir
if [[ -e $BENCH_DIR ]]; then
    if [[ -e $BENCH_DIR/$MARK ]]; then
        rm -rf "$BENCH_DIR"
    elif [[ -d $BENCH_DIR && -z $(ls -A "$BENCH_DIR") ]]; then
        rmdir "$BENCH_DIR"
    else
        die "$BENCH_DIR exists and is not a bench work directory; refusing to wipe it"
    fi
fi
mkdir -p "$BENCH_DIR"
WORK=$(cd "$BENCH_DIR" && pwd)
touch "$WORK/$MARK"

REG_PIDS=()
cleanup() {
    local rc=$? pid
    for pid in "${REG_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    REG_PIDS=()
    if [[ $BENCH_KEEP == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- registries ------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# start_registry NAME: a fresh docker-registry on 127.0.0.1, storage in $WORK/reg-NAME.
# Sets REG_PORT and REG_PID.
start_registry() {
    local name=$1 dir="$WORK/reg-$1" port pid i
    rm -rf "$dir"
    mkdir -p "$dir/data"
    port=$(free_port)
    cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
EOF
    docker-registry serve "$dir/config.yml" >"$dir/log" 2>&1 &
    pid=$!
    REG_PIDS+=("$pid")
    for ((i = 0; i < 200; i++)); do
        if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
            REG_PORT=$port
            REG_PID=$pid
            return 0
        fi
        kill -0 "$pid" 2>/dev/null || { cat "$dir/log" >&2; die "registry $name exited"; }
        sleep 0.05
    done
    die "registry $name did not answer on 127.0.0.1:$port"
}

stop_registry() {
    local pid=$1 p keep=()
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    for p in "${REG_PIDS[@]}"; do
        [[ $p == "$pid" ]] || keep+=("$p")
    done
    REG_PIDS=("${keep[@]}")
}

# CPU seconds (user+sys) a process has used so far.
proc_cpu() {
    awk -v hz="$(getconf CLK_TCK)" '{
        sub(/^.*\) /, ""); print ($12 + $13) / hz }' "/proc/$1/stat"
}
# Bytes a process has written so far (files and sockets alike).
proc_wchar() { awk '/^wchar:/ { print $2 }' "/proc/$1/io"; }

# --- measuring -------------------------------------------------------------------------------
# timed NAME CMD...: runs CMD and appends one sample to $SAMPLES:
#   NAME wall flush user sys rss_kib registry_cpu registry_written_mib
# Every step starts after a sync, so no step pays for an earlier one's writeback; the sync
# right after the step is timed on its own (flush): what the step left in the page cache
# that still had to reach the disk (ferry fsyncs its own files; skopeo, tar, zstd do not).
# registry_* is what the registry REG_WATCH (a PID, if set) did meanwhile.
SAMPLES="$WORK/samples"
: >"$SAMPLES"
REG_WATCH=
timed() {
    local name=$1 tf="$WORK/time.$1" t0 t1 t2 c0=0 c1=0 w0=0 w1=0 u s m
    shift
    sync
    if [[ -n $REG_WATCH ]]; then
        c0=$(proc_cpu "$REG_WATCH")
        w0=$(proc_wchar "$REG_WATCH")
    fi
    t0=$(date +%s.%N)
    /usr/bin/time -f '%U %S %M' -o "$tf" "$@"
    t1=$(date +%s.%N)
    if [[ -n $REG_WATCH ]]; then
        c1=$(proc_cpu "$REG_WATCH")
        w1=$(proc_wchar "$REG_WATCH")
    fi
    sync
    t2=$(date +%s.%N)
    read -r u s m < <(tail -n 1 "$tf")
    awk -v n="$name" -v t0="$t0" -v t1="$t1" -v t2="$t2" -v u="$u" -v s="$s" -v m="$m" \
        -v c0="$c0" -v c1="$c1" -v w0="$w0" -v w1="$w1" -v r="$WATCHED" 'BEGIN {
        if (r) { rc = sprintf("%.2f", c1 - c0); rw = sprintf("%.0f", (w1 - w0) / 1048576) }
        else { rc = "-"; rw = "-" }
        printf "%s %.2f %.2f %.2f %.2f %d %s %s\n", n, t1 - t0, t2 - t1, u, s, m, rc, rw }' \
        >>"$SAMPLES"
}
WATCHED=0
watch_registry() { REG_WATCH=$1; WATCHED=1; }
unwatch() { REG_WATCH=; WATCHED=0; }

# derive NEW A B: a sample NEW whose wall and flush are the sums of the last A and B samples.
derive() {
    local line
    line=$(awk -v n="$1" -v a="$2" -v b="$3" '
        $1 == a { wa = $2; fa = $3 } $1 == b { wb = $2; fb = $3 }
        END { printf "%s %.2f %.2f - - 0 - -\n", n, wa + wb, fa + fb }' "$SAMPLES")
    echo "$line" >>"$SAMPLES"
}

# get NAME COL [med|min|max]: over every sample of NAME (COL 2 = wall ... 8 = reg MiB).
get() {
    awk -v n="$1" -v c="$2" '$1 == n { print $c }' "$SAMPLES" | sort -g | awk -v c="$2" -v how="${3:-med}" '
        { v[NR] = $1 }
        END {
            if (NR == 0) { print "-"; exit }
            if (v[1] == "-") { print "-"; exit }
            if (how == "min") x = v[1]
            else if (how == "max") x = v[NR]
            else if (NR % 2) x = v[(NR + 1) / 2]
            else x = (v[NR / 2] + v[NR / 2 + 1]) / 2
            if (c == 6 || c == 8) printf "%.0f\n", x; else printf "%.2f\n", x
        }'
}

add() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a + b }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
mib() { awk -v a="$1" 'BEGIN { printf "%.1f", a / 1048576 }'; }
kib_mib() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a / 1024 }'; }
dir_bytes() { find "$1" -type f -printf '%s\n' | awk '{ s += $1 } END { print s + 0 }'; }
raw_digest() {
    skopeo inspect --raw --tls-verify=false "docker://$1" | sha256sum | awk '{ print "sha256:" $1 }'
}
blobs_in() { find "$1/data/docker/registry/v2/blobs" -name data -type f | wc -l; }

# --- memory: peak RSS against bundle size and blob count; disk used by import --to ---------
# Each case is an OCI layout source (scripts/mkimage.py, incompressible layers) that goes
# through ferry bundle create (fresh store), bundle verify, import --store (fresh store) and
# import --to (fresh registry), each under /usr/bin/time for its peak RSS. During import --to
# the disk used by ferry's state directory (staging) and its TMPDIR is sampled every 0.1 s.
MEM_ROWS="$WORK/mem-rows" # case command rss_kib
MEM_DISK="$WORK/mem-disk" # case peak_extra_bytes largest_blob_bytes blob_bytes blobs
MEM_INFO="$WORK/mem-info" # case blob_bytes blobs largest_blob_bytes bundle_bytes

rss_of() { # rss_of CASE COMMAND ARGV...: runs ARGV, appends its peak RSS to MEM_ROWS
    local case=$1 cmd=$2 tf="$WORK/mem-time.$1.$2"
    shift 2
    /usr/bin/time -f '%M' -o "$tf" "$@"
    printf '%s %s %s\n' "$case" "$cmd" "$(tail -n 1 "$tf")" >>"$MEM_ROWS"
}

# disk_peak PID DIR...: the most disk the DIRs used together while PID ran (bytes).
disk_peak() {
    local pid=$1 max=0 now
    shift
    while kill -0 "$pid" 2>/dev/null; do
        now=$(du -s -B1 "$@" 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
        ((now > max)) && max=$now
        sleep 0.1
    done
    echo "$max"
}

# mem_case NAME IMAGES LAYERS LAYER_BYTES
mem_case() {
    local name=$1 images=$2 layers=$3 size=$4 c="$WORK/mem-$1" i pid peak digest first largest
    mkdir -p "$c/tmp"
    log "memory case $name: generating $images image(s) x $layers layer(s) of $size bytes (untimed)"
    echo "name = \"mem-$name\"" >"$c/spec.toml"
    for ((i = 1; i <= images; i++)); do
        digest=$(python3 "$ROOT/scripts/mkimage.py" "$c/layout" --tag "mem/img$i:v1" \
            --layers "$layers" --layer-size "$size" --seed "mem-$name-$i")
        ((i > 1)) || first=$digest
        printf '\n[[image]]\nref = "oci:%s:mem/img%d:v1"\n' "$c/layout" "$i" >>"$c/spec.toml"
    done
    largest=$(find "$c/layout/blobs" -type f -printf '%s\n' | sort -n | tail -n 1)
    printf '%s %s %s %s ' "$name" "$(dir_bytes "$c/layout/blobs")" \
        "$(find "$c/layout/blobs" -type f | wc -l)" "$largest" >>"$MEM_INFO"
    sync
    log "memory case $name: bundle create, verify, import --store, import --to"
    rss_of "$name" create env TMPDIR="$c/tmp" "$FERRY" bundle create "$c/spec.toml" \
        -o "$c/b.ferry" --key "$WORK/k.key" --store "$c/store" --force -q
    stat -c %s "$c/b.ferry" >>"$MEM_INFO"
    rm -rf "$c/layout" "$c/store"
    sync
    rss_of "$name" verify env TMPDIR="$c/tmp" "$FERRY" bundle verify "$c/b.ferry" \
        --trust "$WORK/k.pub" -q
    rss_of "$name" import-store env TMPDIR="$c/tmp" "$FERRY" import "$c/b.ferry" \
        --trust "$WORK/k.pub" --store "$c/imported" --state-dir "$c/state-store" -q
    rm -rf "$c/imported" "$c/state-store"
    sync
    start_registry "mem-$name"
    rss_of "$name" import-to env TMPDIR="$c/tmp" "$FERRY" import "$c/b.ferry" \
        --trust "$WORK/k.pub" --to "127.0.0.1:$REG_PORT" --state-dir "$c/state" -q &
    pid=$!
    peak=$(disk_peak "$pid" "$c/state" "$c/tmp")
    wait "$pid"
    [[ $(raw_digest "127.0.0.1:$REG_PORT/mem/img1:v1") == "$first" ]] ||
        { log "MISMATCH in memory case $name"; ok=0; }
    printf '%s %s %s\n' "$name" "$peak" "$largest" >>"$MEM_DISK"
    stop_registry "$REG_PID"
    rm -rf "$c" "$WORK/reg-mem-$name"
}

memory_section() {
    local mb n images layers small large lo hi cmd a b
    : >"$MEM_ROWS"
    : >"$MEM_DISK"
    : >"$MEM_INFO"
    [[ -e $WORK/k.key ]] || "$FERRY" key generate "$WORK/k" -q
    read -r lo hi <<<"$BENCH_MEMORY_MB"
    for mb in $lo $hi; do # few large blobs: one image, 4 layers
        mem_case "${mb}MiB" 1 4 $((mb * 1048576 / 4))
    done
    read -r small large <<<"$BENCH_MEMORY_BLOBS"
    # Both blob-count cases carry the same bytes (the many-blob case's 1 KiB layers), so
    # that only the count differs: the bytes axis is the two cases above.
    local total=$((large * 1024))
    for n in $small $large; do # up to 500 blobs per image (layers + config + manifest)
        images=$(((n + 499) / 500))
        layers=$((n / images - 2))
        mem_case "${n}blobs" "$images" "$layers" $((total / (images * layers)))
    done

    echo
    echo "ferry memory: peak RSS per command (/usr/bin/time %M), limit $BENCH_MEMORY_LIMIT MiB"
    printf '  %-10s %11s %7s %11s %10s\n' case content-MiB blobs largest-MiB bundle-MiB
    awk '{ printf "  %-10s %11.1f %7d %11.1f %10.1f\n", $1, $2 / 1048576, $3, $4 / 1048576, $5 / 1048576 }' \
        "$MEM_INFO"
    echo
    printf '  %-10s %-13s %8s %6s\n' case command RSS-MiB "<${BENCH_MEMORY_LIMIT}"
    awk -v lim="$BENCH_MEMORY_LIMIT" '{
        m = $3 / 1024; if (m >= lim) bad = 1
        printf "  %-10s %-13s %8.1f %6s\n", $1, $2, m, m < lim ? "yes" : "NO" }
        END { exit bad }' "$MEM_ROWS" || ok=0
    echo
    echo "  spread (MiB) = RSS of the large case - RSS of the small one, per command:"
    printf '  %-13s %22s %22s\n' command "${hi}MiB-${lo}MiB" "${large}blobs-${small}blobs"
    for cmd in create verify import-store import-to; do
        a=$(awk -v c="$cmd" -v x="${hi}MiB" -v y="${lo}MiB" '
            $2 == c && $1 == x { p = $3 } $2 == c && $1 == y { q = $3 }
            END { printf "%+.1f", (p - q) / 1024 }' "$MEM_ROWS")
        b=$(awk -v c="$cmd" -v x="${large}blobs" -v y="${small}blobs" '
            $2 == c && $1 == x { p = $3 } $2 == c && $1 == y { q = $3 }
            END { printf "%+.1f", (p - q) / 1024 }' "$MEM_ROWS")
        printf '  %-13s %22s %22s\n' "$cmd" "$a" "$b"
    done
    echo
    echo "  disk: peak extra disk of import --to (ferry's state directory and TMPDIR, sampled"
    echo "  every 0.1 s; the target registry's own storage not counted) against the largest blob:"
    printf '  %-10s %15s %12s %12s\n' case extra-disk-MiB largest-MiB content-MiB
    awk 'NR == FNR { content[$1] = $2; next }
        { printf "  %-10s %15.1f %12.1f %12.1f\n", $1, $2 / 1048576, $3 / 1048576, content[$1] / 1048576 }' \
        "$MEM_INFO" "$MEM_DISK"
}

# --- content ---------------------------------------------------------------------------------
NPLAT=$(awk -F, '{ print NF }' <<<"$BENCH_PLATFORMS")
LAYERS=3 # per manifest: a base layer shared by every image, then 2 of the image's own

# gen_push MIB PREFIX: BENCH_IMAGES images with about MIB MiB of distinct compressed content
# in all, pushed to the source as PREFIX/imgN:v1 (untimed). Sets GEN_DIGESTS, GEN_BYTES.
gen_push() {
    local mb=$1 prefix=$2 gen="$WORK/gen-$2" unit layer base i d
    # distinct bytes = platforms * (base + images * (LAYERS-1) * layer), with base = 3 layers
    unit=$((NPLAT * (3 + BENCH_IMAGES * (LAYERS - 1))))
    layer=$((mb * 1048576 / unit))
    base=$((3 * layer))
    GEN_DIGESTS=()
    for ((i = 1; i <= BENCH_IMAGES; i++)); do
        d=$(python3 "$ROOT/scripts/mkimage.py" "$gen" --tag "img$i" \
            --platforms "$BENCH_PLATFORMS" --layers "$LAYERS" --layer-size "$layer" \
            --shared-base "$base" --seed "bench-$prefix-$i")
        GEN_DIGESTS+=("$d")
        skopeo copy -q --all --preserve-digests --dest-tls-verify=false \
            "oci:$gen:img$i" "docker://$SRC/$prefix/img$i:v1" >/dev/null
    done
    GEN_BYTES=$(dir_bytes "$gen/blobs")
    rm -rf "$gen"
}

write_spec() { # write_spec FILE PREFIX
    local i
    {
        echo "name = \"bench-$2\""
        for ((i = 1; i <= BENCH_IMAGES; i++)); do
            printf '\n[[image]]\nref = "%s/%s/img%d:v1"\n' "$SRC" "$2" "$i"
        done
    } >"$1"
}

copy_all_out() { # LAYOUT: every image from the source into one OCI layout
    local i
    for ((i = 1; i <= BENCH_IMAGES; i++)); do
        skopeo copy -q --all --preserve-digests --src-tls-verify=false \
            "docker://$SRC/bench/img$i:v1" "oci:$1:bench/img$i:v1" >/dev/null
    done
}
copy_all_in() { # LAYOUT TARGET: every image from the layout into the target registry
    local i
    for ((i = 1; i <= BENCH_IMAGES; i++)); do
        skopeo copy -q --all --preserve-digests --dest-tls-verify=false \
            "oci:$1:bench/img$i:v1" "docker://$2/bench/img$i:v1" >/dev/null
    done
}
export -f copy_all_out copy_all_in

# The floor: the plan's blobs and manifests from the source to files, and from the files
# to a fresh registry, with nothing else (see the header). One curl process per pass
# (--parallel for the blobs), so process start-up does not weigh on the floor.
floor_get() { # floor_get DIR
    local par=(curl -fsS --no-progress-meter --parallel --parallel-max 4)
    mkdir -p "$1"
    awk -v d="$1" -v s="$SRC" '$1 == "blob" {
        h = $3; sub(/^sha256:/, "", h)
        printf "url = \"http://%s/v2/%s/blobs/%s\"\noutput = \"%s/%s\"\n", s, $2, $3, d, h }' \
        "$WORK/floor-plan" >"$1.get"
    "${par[@]}" -K "$1.get"
    awk -v d="$1" -v s="$SRC" 'BEGIN { n = 0 } $1 == "manifest" {
        h = $3; sub(/^sha256:/, "", h); if (n++) print "next"
        printf "url = \"http://%s/v2/%s/manifests/%s\"\nheader = \"Accept: %s\"\noutput = \"%s/%s\"\n",
            s, $2, $3, $4, d, h }' "$WORK/floor-plan" >"$1.manifests"
    curl -fsS -K "$1.manifests"
}
floor_put() { # floor_put DIR TARGET
    local dir=$1 t=$2 url loc sep par=(curl -fsS --no-progress-meter --parallel --parallel-max 4)
    # Upload sessions (one POST per blob; the query tells them apart, the registry
    # ignores it), then a PUT of each file to its session, then the mounts.
    awk -v t="$t" '$1 == "blob" {
        printf "url = \"http://%s/v2/%s/blobs/uploads/?floor=%s\"\noutput = \"/dev/null\"\n", t, $2, $3 }' \
        "$WORK/floor-plan" >"$dir.post"
    "${par[@]}" -X POST -w '%{url} %header{location}\n' -K "$dir.post" >"$dir.sessions"
    : >"$dir.put"
    while read -r url loc; do
        [[ $loc == http* ]] || loc="http://$t$loc"
        [[ $loc == *\?* ]] && sep="&" || sep="?"
        printf 'url = "%s%sdigest=%s"\nupload-file = "%s/%s"\noutput = "/dev/null"\n' \
            "$loc" "$sep" "${url##*floor=}" "$dir" "${url##*floor=sha256:}" >>"$dir.put"
    done <"$dir.sessions"
    "${par[@]}" -H "Content-Type: application/octet-stream" -K "$dir.put"
    awk -v t="$t" '$1 == "mount" {
        printf "url = \"http://%s/v2/%s/blobs/uploads/?mount=%s&from=%s\"\noutput = \"/dev/null\"\n", t, $2, $3, $4 }' \
        "$WORK/floor-plan" >"$dir.mount"
    [[ ! -s $dir.mount ]] || "${par[@]}" -X POST -K "$dir.mount"
    # Manifests children first, then the tags, in the plan's order: one PUT each.
    awk -v d="$dir" -v t="$t" 'BEGIN { n = 0 }
        $1 == "manifest" { h = $3; sub(/^sha256:/, "", h); ref = $3; mt = $4 }
        $1 == "tag" { h = $4; sub(/^sha256:/, "", h); ref = $3; mt = $5 }
        $1 == "manifest" || $1 == "tag" { if (n++) print "next"
            printf "url = \"http://%s/v2/%s/manifests/%s\"\nrequest = \"PUT\"\nheader = \"Content-Type: %s\"\ndata-binary = \"@%s/%s\"\noutput = \"/dev/null\"\n",
                t, $2, ref, mt, d, h }' "$WORK/floor-plan" >"$dir.manifests-put"
    curl -fsS -K "$dir.manifests-put"
}
export -f floor_get floor_put

ok=1
ecosystems_section() {
    BENCH_DIR="$WORK/ecosystems" BENCH_REPEAT=$BENCH_REPEAT BENCH_KEEP=$BENCH_KEEP \
        bash "$ROOT/scripts/bench-ecosystems.sh" || ok=0
}
if [[ $BENCH_ECOSYSTEMS == only ]]; then
    ecosystems_section
    echo
    echo "run time ${SECONDS}s"
    [[ $ok == 1 ]] || exit 1
    exit 0
fi
if [[ $BENCH_MEMORY == only ]]; then
    memory_section
    echo
    echo "run time ${SECONDS}s"
    [[ $ok == 1 ]] || exit 1
    exit 0
fi

start_registry src
SRC=127.0.0.1:$REG_PORT
SRC_PID=$REG_PID
export SRC BENCH_IMAGES WORK
log "source registry on $SRC (pid $SRC_PID)"

log "generating ~${BENCH_MB} MiB: $BENCH_IMAGES images x $NPLAT platforms, shared base (untimed)"
GEN_T0=$SECONDS
gen_push "$BENCH_MB" bench
GEN_SECS=$((SECONDS - GEN_T0))
CONTENT_BYTES=$GEN_BYTES
SRC_DIGESTS=("${GEN_DIGESTS[@]}")
NB_SRC=$(blobs_in "$WORK/reg-src")

"$FERRY" key generate "$WORK/k" -q
write_spec "$WORK/spec.toml" bench
python3 "$ROOT/scripts/floor-plan.py" "$SRC" \
    $(for ((i = 1; i <= BENCH_IMAGES; i++)); do echo "bench/img$i:v1"; done) >"$WORK/floor-plan"

# The source's blobs in the page cache for every contender alike.
cat "$WORK"/reg-src/data/docker/registry/v2/blobs/sha256/*/*/data >/dev/null

# --- the timed comparison ----------------------------------------------------------------------
skopeo_export() {
    watch_registry "$SRC_PID"
    timed sk_copy_out bash -c 'set -euo pipefail; copy_all_out "$1"' _ "$R/layout"
    unwatch
    timed sk_pack bash -c 'set -euo pipefail; tar -C "$1" -cf - . | zstd -T0 -q -o "$2"' \
        _ "$R/layout" "$R/bundle.tar.zst"
    derive sk_export sk_copy_out sk_pack
}
ferry_export() {
    watch_registry "$SRC_PID"
    timed fe_create "$FERRY" bundle create "$WORK/spec.toml" -o "$R/bench.ferry" \
        --key "$WORK/k.key" --store "$R/store" --force -q
    unwatch
}
skopeo_import() {
    mkdir -p "$R/l2"
    timed sk_unpack bash -c 'set -euo pipefail; zstd -dc "$1" | tar -x -C "$2"' \
        _ "$R/bundle.tar.zst" "$R/l2"
    watch_registry "$TGT1_PID"
    timed sk_copy_in bash -c 'set -euo pipefail; copy_all_in "$1" "$2"' _ "$R/l2" "$TGT1"
    unwatch
    derive sk_import sk_unpack sk_copy_in
}
ferry_import() {
    watch_registry "$TGT2_PID"
    timed fe_import "$FERRY" import "$R/bench.ferry" --trust "$WORK/k.pub" --to "$TGT2" \
        --state-dir "$R/state" -q
    unwatch
}

floor_export() {
    watch_registry "$SRC_PID"
    timed fl_export bash -c 'set -euo pipefail; floor_get "$1"' _ "$R/floor"
    unwatch
}
floor_import() {
    watch_registry "$TGT3_PID"
    timed fl_import bash -c 'set -euo pipefail; floor_put "$1" "$2"' _ "$R/floor" "$TGT3"
    unwatch
}

for ((rep = 1; rep <= BENCH_REPEAT; rep++)); do
    R="$WORK/rep$rep"
    mkdir -p "$R"
    start_registry "tgt-floor-$rep"
    TGT3=127.0.0.1:$REG_PORT
    TGT3_PID=$REG_PID
    start_registry "tgt-skopeo-$rep"
    TGT1=127.0.0.1:$REG_PORT
    TGT1_PID=$REG_PID
    start_registry "tgt-ferry-$rep"
    TGT2=127.0.0.1:$REG_PORT
    TGT2_PID=$REG_PID
    if ((rep % 2)); then
        log "run $rep/$BENCH_REPEAT: export (floor, pipeline, ferry), import (same order)"
        floor_export
        skopeo_export
        ferry_export
        floor_import
        skopeo_import
        ferry_import
    else
        log "run $rep/$BENCH_REPEAT: export (ferry, pipeline, floor), import (same order)"
        ferry_export
        skopeo_export
        floor_export
        ferry_import
        skopeo_import
        floor_import
    fi
    derive sk_total sk_export sk_import
    derive fe_total fe_create fe_import
    derive fl_total fl_export fl_import

    for ((i = 1; i <= BENCH_IMAGES; i++)); do
        ref=bench/img$i:v1
        s=$(raw_digest "$SRC/$ref")
        a=$(raw_digest "$TGT1/$ref")
        b=$(raw_digest "$TGT2/$ref")
        c=$(raw_digest "$TGT3/$ref")
        if [[ $s != "${SRC_DIGESTS[i - 1]}" || $a != "$s" || $b != "$s" || $c != "$s" ]]; then
            log "MISMATCH $ref: generated ${SRC_DIGESTS[i - 1]} source $s skopeo $a ferry $b floor $c"
            ok=0
        fi
    done
    NB1=$(blobs_in "$WORK/reg-tgt-skopeo-$rep")
    NB2=$(blobs_in "$WORK/reg-tgt-ferry-$rep")
    NB3=$(blobs_in "$WORK/reg-tgt-floor-$rep")
    if [[ $NB3 != "$NB1" ]]; then
        log "blob count differs: skopeo target $NB1, floor target $NB3"
        ok=0
    fi
    # ferry also pushes the bundle's SBOM artifact (ferry/sbom:<series>-<sequence>): its
    # manifest, the empty config and the two documents.
    if [[ $((NB1 + 4)) != "$NB2" ]]; then
        log "blob count differs: skopeo target $NB1 (+4 for ferry's SBOM artifact), ferry target $NB2"
        ok=0
    fi
    SZ_TAR=$(stat -c %s "$R/bundle.tar.zst")
    SZ_FERRY=$(stat -c %s "$R/bench.ferry")
    stop_registry "$TGT1_PID"
    stop_registry "$TGT2_PID"
    stop_registry "$TGT3_PID"
    if [[ $BENCH_KEEP != 1 ]]; then
        rm -rf "$WORK/reg-tgt-skopeo-$rep" "$WORK/reg-tgt-ferry-$rep" "$WORK/reg-tgt-floor-$rep" \
            "$R/l2" "$R/layout" "$R/floor"
        ((rep == BENCH_REPEAT)) || rm -rf "$R"
    fi
done

# --- phases: where ferry's time goes (once, after the repetitions) ----------------------------
if [[ $BENCH_PHASES == 1 ]]; then
    log "phases: ferry pull alone, create with a warm store, bundle verify, import to a store"
    watch_registry "$SRC_PID"
    timed ph_pull "$FERRY" pull "$WORK/spec.toml" --store "$WORK/ph-store" -q
    unwatch
    timed ph_write "$FERRY" bundle create "$WORK/spec.toml" -o "$WORK/ph-warm.ferry" \
        --key "$WORK/k.key" --store "$WORK/ph-store" --force -q
    timed ph_verify "$FERRY" bundle verify "$R/bench.ferry" --trust "$WORK/k.pub" -q
    timed ph_tostore "$FERRY" import "$R/bench.ferry" --trust "$WORK/k.pub" \
        --store "$WORK/ph-imported" -q
    rm -rf "$WORK/ph-store" "$WORK/ph-warm.ferry" "$WORK/ph-imported"
fi

# --- report --------------------------------------------------------------------------------------
w() { get "$1" 2; }
wf() { add "$(get "$1" 2)" "$(get "$1" 3)"; }
echo
echo "ferry bench: $BENCH_IMAGES images x $NPLAT platforms ($BENCH_PLATFORMS), base layer shared by all,"
echo "  content $(mib "$CONTENT_BYTES") MiB compressed ($CONTENT_BYTES bytes in $NB_SRC distinct blobs)"
echo "  $(nproc) cores, $(awk '/MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo);" \
    "ferry $("$FERRY" --version | awk '{ print $2 }'), skopeo $(skopeo --version | awk '{ print $3 }')," \
    "zstd $(zstd -V | grep -o 'v[0-9.]*' | head -n 1), docker-registry $(docker-registry --version | awk '{ print $3 }')"
echo "  median of $BENCH_REPEAT run(s), contenders alternating first; seconds, wall clock"
echo
printf '%-7s %12s %8s %6s  |  %12s %8s %6s\n' side skopeo-pipe ferry ratio "+flush: pipe" ferry ratio
trow() {
    local a b c d
    a=$(w "$2") b=$(w "$3") c=$(wf "$2") d=$(wf "$3")
    printf '%-7s %12s %8s %6s  |  %12s %8s %6s\n' "$1" "$a" "$b" "$(ratio "$a" "$b")" \
        "$c" "$d" "$(ratio "$c" "$d")"
}
trow export sk_export fe_create
trow import sk_import fe_import
trow total sk_total fe_total
echo "  ratio = pipeline / ferry (> 1: ferry is faster). +flush adds the time the page cache"
echo "  took to reach the disk after each step (ferry fsyncs its own output; the pipeline"
echo "  does not)."
echo
echo "ferry against the floor and the pipeline (ratio = ferry / other; < 1: ferry is faster;"
echo "the goal is ferry/floor <= 1.5 for both):"
printf '%-7s %8s %12s %8s %12s %13s\n' side floor skopeo-pipe ferry ferry/floor ferry/skopeo
frow() {
    local f k e
    f=$(w "$2") k=$(w "$3") e=$(w "$4")
    printf '%-7s %8s %12s %8s %12s %13s\n' "$1" "$f" "$k" "$e" "$(ratio "$e" "$f")" "$(ratio "$e" "$k")"
}
frow export fl_export sk_export fe_create
frow import fl_import sk_import fe_import
frow both fl_total sk_total fe_total
echo
printf 'sizes    bundle.tar.zst %s MiB (%s bytes), bench.ferry %s MiB (%s bytes), content %s MiB\n' \
    "$(mib "$SZ_TAR")" "$SZ_TAR" "$(mib "$SZ_FERRY")" "$SZ_FERRY" "$(mib "$CONTENT_BYTES")"
bash "$(dirname "${BASH_SOURCE[0]}")/sbom-size.sh" "$R/bench.ferry" "$FERRY"
printf 'peak RSS ferry bundle create %s MiB, ferry import %s MiB (max over runs)\n' \
    "$(kib_mib "$(get fe_create 6 max)")" "$(kib_mib "$(get fe_import 6 max)")"
echo
echo "steps (medians; wall min-max over runs; client CPU user/sys s; peak RSS MiB; registry CPU s"
echo "and MiB written by the registry meanwhile):"
printf '  %-33s %6s %11s %6s %6s %6s %5s %7s %7s\n' step wall min-max flush user sys rss reg-cpu reg-MiB
row() {
    printf '  %-33s %6s %11s %6s %6s %6s %5s %7s %7s\n' "$1" "$(w "$2")" \
        "$(get "$2" 2 min)-$(get "$2" 2 max)" "$(get "$2" 3)" "$(get "$2" 4)" "$(get "$2" 5)" \
        "$(kib_mib "$(get "$2" 6 max)")" "$(get "$2" 7)" "$(get "$2" 8)"
}
row "floor: GET to files" fl_export
row "floor: POST + PUT from files" fl_import
row "skopeo copy registry->layout" sk_copy_out
row "tar | zstd -T0" sk_pack
row "ferry bundle create" fe_create
row "zstd -dc | tar -x" sk_unpack
row "skopeo copy layout->registry" sk_copy_in
row "ferry import" fe_import
if [[ $BENCH_PHASES == 1 ]]; then
    row "phase: ferry pull (fresh store)" ph_pull
    row "phase: create from a warm store" ph_write
    row "phase: ferry bundle verify" ph_verify
    row "phase: import into a store" ph_tostore
fi
echo "  (each step starts after a sync; flush = the sync right after it; skopeo rows count"
echo "   every process of the step. reg-*: the source registry for the export rows and the"
echo "   pull (MiB written = sent), the step's fresh target for the import rows (MiB written ="
echo "   stored, and that registry fsyncs every blob). Phases: pull alone + create from a warm"
echo "   store ~ create; import into a store = verify + stage (fsync) + commit, no push, so"
echo "   ferry import - import into a store ~ the push.)"
echo
if [[ $ok == 1 ]]; then
    echo "correct: in every run the $BENCH_IMAGES index digests are identical in the source, the skopeo, floor and ferry targets, and the skopeo and floor targets hold $NB1 blobs"
else
    echo "INCORRECT: see the messages above"
fi

# --- scales: the ferry side alone at several sizes --------------------------------------------
if [[ -n $BENCH_SCALES ]]; then
    echo
    echo "ferry alone at several sizes (fresh store and fresh target registry each; s = wall):"
    printf '  %6s %11s %9s %15s %9s %15s %11s\n' MiB content-MiB create-s "create-RSS-MiB" \
        import-s "import-RSS-MiB" bundle-MiB
    for mb in $BENCH_SCALES; do
        log "scale $mb MiB: generating (untimed)"
        gen_push "$mb" "s$mb"
        write_spec "$WORK/spec-s$mb.toml" "s$mb"
        timed "sc_create_$mb" "$FERRY" bundle create "$WORK/spec-s$mb.toml" \
            -o "$WORK/s$mb.ferry" --key "$WORK/k.key" --store "$WORK/store-s$mb" --force -q
        start_registry "tgt-s$mb"
        timed "sc_import_$mb" "$FERRY" import "$WORK/s$mb.ferry" --trust "$WORK/k.pub" \
            --to "127.0.0.1:$REG_PORT" --state-dir "$WORK/state-s$mb" -q
        d=$(raw_digest "127.0.0.1:$REG_PORT/s$mb/img1:v1")
        [[ $d == "${GEN_DIGESTS[0]}" ]] || { log "MISMATCH at scale $mb"; ok=0; }
        stop_registry "$REG_PID"
        printf '  %6s %11s %9s %15s %9s %15s %11s\n' "$mb" "$(mib "$GEN_BYTES")" \
            "$(w "sc_create_$mb")" "$(kib_mib "$(get "sc_create_$mb" 6)")" \
            "$(w "sc_import_$mb")" "$(kib_mib "$(get "sc_import_$mb" 6)")" \
            "$(mib "$(stat -c %s "$WORK/s$mb.ferry")")"
        rm -rf "$WORK/s$mb.ferry" "$WORK/store-s$mb" "$WORK/state-s$mb" "$WORK/reg-tgt-s$mb"
    done
fi

[[ $BENCH_MEMORY != 1 ]] || memory_section
[[ $BENCH_ECOSYSTEMS != 1 ]] || ecosystems_section

echo
echo "run time ${SECONDS}s (generating and pushing the main content: ${GEN_SECS}s, untimed)"
[[ $ok == 1 ]] || exit 1
