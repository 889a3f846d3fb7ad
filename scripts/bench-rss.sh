#!/usr/bin/env bash
# Resident memory of `mountshare serve` across repeated full walks of a wide tree: builds (once)
# a tree of DIRS directories of FILES empty files (default 100 x 10,000 = 1,000,100 entries) on
# disk under target/, starts `mountshare serve` over it on 127.0.0.1, runs
# `mountshare bench --workload walk --dir /` WALKS times (default 10) and prints the server's
# VmRSS (from /proc/PID/status) after each walk.
#
#   scripts/bench-rss.sh [-- SERVE_FLAGS...]      e.g. scripts/bench-rss.sh -- --dir-cache 4MiB
#
# TREE, DIRS, FILES, WALKS and PORT change the parameters; BIN=PATH measures another build of
# mountshare (the static musl binary of scripts/build-static, say). Needs about 1 million free inodes.
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
TREE="${TREE:-$TARGET/bench-rss-tree}"
DIRS="${DIRS:-100}"
FILES="${FILES:-10000}"
WALKS="${WALKS:-10}"
PORT="${PORT:-}"
[ "${1:-}" = "--" ] && shift

cd "$REPO"
[ -n "${BIN:-}" ] || cargo build --release -q -p mountshare
cargo run --release -q -p mountshare-testkit --example wide_tree -- "$TREE" "$DIRS" "$FILES"
BIN="${BIN:-$TARGET/release/mountshare}"

die() { echo "bench-rss: $*" >&2; exit 1; }
# shellcheck source=scripts/bench-lib.sh
. "$REPO/scripts/bench-lib.sh"
[ -n "$PORT" ] || PORT="$(free_port)"

LOG="$(mktemp)"
"$BIN" serve "$TREE" --listen "127.0.0.1:$PORT" "$@" >"$LOG" 2>&1 &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -f "$LOG"
}
trap cleanup EXIT
for _ in $(seq 1 100); do
    port_is_free "$PORT" || break
    kill -0 "$SERVER" 2>/dev/null || { cat "$LOG" >&2; exit 1; }
    sleep 0.1
done

rss() { awk '/^VmRSS:/ { printf "%.1f", $2 / 1024 }' "/proc/$SERVER/status"; }
threads() { awk '/^Threads:/ { print $2 }' "/proc/$SERVER/status"; }
echo "tree: $TREE ($DIRS x $FILES); server pid $SERVER on 127.0.0.1:$PORT; serve flags: ${*:-none}"
echo "before: RSS $(rss) MiB"
for i in $(seq 1 "$WALKS"); do
    line="$("$BIN" bench --server "127.0.0.1:$PORT" --workload walk --dir / | grep '^walk ' || true)"
    echo "walk $i: RSS $(rss) MiB, $(threads) threads; ${line:-walk failed}"
done
