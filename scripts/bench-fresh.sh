#!/usr/bin/env bash
# How fresh the Linux kernel client's view of `mountshare serve` is, and what it costs the server,
# with the shipped mount options (lookupcache=positive,acdirmin=1,acdirmax=2) beside the
# kernel's defaults (acdirmin=30,acdirmax=60,lookupcache=all). One qemu VM (TCG) mounts a server
# per option set; crates/testkit/examples/freshness.rs does the work and prints the report:
#   1. delay until a new folder shows in `ls`, on a never-looked-up path, on a path missed
#      before (ROUNDS rounds, each capped at CAP seconds; median)
#   2. NFS calls and backend listings per second while the guest is idle for IDLE seconds
#   3. NFS calls by procedure and listings of a library scan (`find -L media -type f`, one
#      stat per file through its symlink), twice, SCAN_GAP seconds apart
# over FOLDERS folders __all__/item-NNNNN/video.mkv and as many symlinks in media/.
#
#   scripts/bench-fresh.sh [ROUNDS]     (default 3)
#
# FOLDERS (10000), IDLE (30), CAP (90), SCAN_GAP (0) and REFRESH (the server's
# --refresh-interval, 2s) change the parameters. The tree is made below target/ and removed
# afterwards. Needs qemu-system-x86, linux-image-amd64 and busybox-static, as the VM tests do.
# With the defaults the run takes about ten minutes.
set -euo pipefail

ROUNDS="${1:-3}"
FOLDERS="${FOLDERS:-10000}"
IDLE="${IDLE:-30}"
CAP="${CAP:-90}"
SCAN_GAP="${SCAN_GAP:-0}"
REFRESH="${REFRESH:-2s}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

die() { echo "bench-fresh: $*" >&2; exit 1; }
say() { echo "bench-fresh: $*" >&2; }
for n in ROUNDS FOLDERS IDLE CAP SCAN_GAP; do
    [[ "${!n}" =~ ^[0-9]+$ ]] || die "$n must be a number, not ${!n}"
done
for tool in cargo qemu-system-x86_64; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done

trap 'exit 130' INT TERM
# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap bench_cleanup EXIT

say "building mountshare and the freshness runner (release)..."
(cd "$REPO" && cargo build --release -q -p mountshare -p mountshare-testkit --example freshness)
BIN="$TARGET/release/mountshare"
RUNNER="$TARGET/release/examples/freshness"
for b in "$BIN" "$RUNNER"; do [ -x "$b" ] || die "no binary at $b"; done

mkdir -p "$TARGET"
WORK="$(mktemp -d "$TARGET/bench-fresh.XXXXXX")"
say "$FOLDERS folders, $ROUNDS rounds, idle ${IDLE}s, cap ${CAP}s, scan gap ${SCAN_GAP}s, refresh $REFRESH"
"$RUNNER" --bin "$BIN" --work "$WORK" --folders "$FOLDERS" --rounds "$ROUNDS" --idle "$IDLE" \
    --cap "$CAP" --scan-gap "$SCAN_GAP" --refresh "$REFRESH"
