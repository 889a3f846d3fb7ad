#!/usr/bin/env bash
# Run the cargo-fuzz targets in fuzz/ (the protocol decoders) for SECONDS each, one after the
# other, starting from the committed seeds in fuzz/corpus/<target>/. Fails, naming the input
# and the command that replays it, if any target crashes (a panic, a failed round-trip check,
# an out-of-memory or a hang of more than 10 s on one input). Prints each target's executions.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default 10 s, every target)
#
# New inputs the fuzzer finds go to a scratch corpus, never into fuzz/corpus; set
# FUZZ_CORPUS=DIR to keep them (DIR/<target>/) and resume from them next time.
# Needs: cargo-fuzz (`cargo install cargo-fuzz --locked`) and the nightly toolchain. Without a
# nightly toolchain the stable one is used with RUSTC_BOOTSTRAP=1, which lets it take the
# unstable flags cargo-fuzz passes (sanitizer coverage); FUZZ_TOOLCHAIN=NAME picks another.
set -euo pipefail

SECONDS_EACH="${1:-10}"
shift || true
REPO="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO/fuzz"

die() { echo "fuzz: $*" >&2; exit 1; }
command -v cargo-fuzz >/dev/null 2>&1 || die "cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
if [ -n "${FUZZ_TOOLCHAIN:-}" ]; then
    TOOLCHAIN="$FUZZ_TOOLCHAIN"
elif cargo +nightly --version >/dev/null 2>&1; then
    TOOLCHAIN=nightly
else
    TOOLCHAIN=stable
    export RUSTC_BOOTSTRAP=1
    echo "fuzz: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
fi
cargo "+$TOOLCHAIN" --version >/dev/null 2>&1 || die "no toolchain $TOOLCHAIN"
fuzz() { cargo "+$TOOLCHAIN" fuzz "$@"; }

if [ "$#" -gt 0 ]; then
    TARGETS=("$@")
else
    mapfile -t TARGETS < <(fuzz list)
fi

SCRATCH="$(mktemp -d)"
trap 'rm -rf "$SCRATCH"' EXIT
CORPUS="${FUZZ_CORPUS:-$SCRATCH/corpus}"

fuzz build

total=0
for t in "${TARGETS[@]}"; do
    [ -d "corpus/$t" ] || die "no seed corpus fuzz/corpus/$t"
    mkdir -p "$CORPUS/$t"
    log="$SCRATCH/$t.log"
    # The first corpus directory receives new inputs; the committed seeds are only read.
    if ! fuzz run "$t" "$CORPUS/$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=1024 \
        -print_final_stats=1 >"$log" 2>&1; then
        tail -n 60 "$log" >&2
        artifact="$(grep -o 'artifacts/[^ ]*' "$log" | tail -n 1 || true)"
        echo >&2
        echo "fuzz: target $t crashed; replay with:" >&2
        echo "  (cd fuzz && ${RUSTC_BOOTSTRAP:+RUSTC_BOOTSTRAP=1 }cargo +$TOOLCHAIN fuzz run $t ${artifact:-artifacts/$t/<input>})" >&2
        exit 1
    fi
    execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)"
    units="$(find "$CORPUS/$t" "corpus/$t" -type f | wc -l)"
    printf 'fuzz: %-10s %10d executions in %ss, no crash (corpus %d inputs)\n' \
        "$t" "$execs" "$SECONDS_EACH" "$units"
    total=$((total + execs))
done
echo "fuzz: ${#TARGETS[@]} targets, $total executions, no crash"
