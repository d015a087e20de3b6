#!/usr/bin/env bash
# Fuzzes ferry's parsers of hostile input, one target after the other:
#   bash scripts/fuzz.sh SECONDS [TARGET...]      (default: every target in fuzz/)
# Each target runs SECONDS on the nightly toolchain (cargo-fuzz, libFuzzer, ASan). The
# committed seeds in fuzz/corpus/<target> are copied into target/fuzz-corpus/<target>,
# where the corpus grows; crashes, timeouts and OOMs land in fuzz/artifacts/<target>.
# Prints one summary line per target; exits 1 if any target found something.
# Not run by CI or scripts/test.sh: an honest run takes far longer than CI has.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

cd fuzz
if (($# > 0)); then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
# Bundles are the largest input: the seed bundles are a few KiB, a real one far more.
max_len() {
    case $1 in
        bundle_reader_raw | bundle_reader_structured) echo 65536 ;;
        *) echo 16384 ;;
    esac
}

cargo +nightly fuzz build
logs=$root/target/fuzz-logs
mkdir -p "$logs"
found=0
summary=()
for t in "${targets[@]}"; do
    corpus=$root/target/fuzz-corpus/$t
    mkdir -p "$corpus" "artifacts/$t"
    cp -n corpus/"$t"/* "$corpus"/ 2>/dev/null || true
    before=$(find "artifacts/$t" -type f | wc -l)
    log=$logs/$t.log
    echo "fuzz: $t for ${seconds}s (log: $log)" >&2
    status=0
    # One process: the machine has other work to do.
    cargo +nightly fuzz run "$t" "$corpus" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=30 \
        -max_len="$(max_len "$t")" -print_final_stats=1 >"$log" 2>&1 || status=$?
    after=$(find "artifacts/$t" -type f | wc -l)
    # The last status line (`#N DONE cov: C ft: F corp: K/S ...`), and the final stats.
    last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
    runs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -1)
    rate=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+)/\1/p' "$log" | tail -1)
    cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
    ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
    corp=$(sed -nE 's/.* corp: ([0-9]+\/[0-9]+[a-zA-Z]*).*/\1/p' <<<"$last")
    new=$((after - before))
    line=$(printf '%-26s %6ss  execs %10s  exec/s %6s  cov %6s  ft %6s  corpus %-12s  findings %s' \
        "$t" "$seconds" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$new")
    if ((status != 0 || new > 0)); then
        found=1
        line+="  (exit $status; see $log and fuzz/artifacts/$t)"
    fi
    echo "$line" >&2
    summary+=("$line")
done
echo >&2
printf '%s\n' "${summary[@]}" | tee "$logs/summary.txt" >&2
exit "$found"
