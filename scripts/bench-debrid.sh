#!/usr/bin/env bash
# Sequential read of one large file from a debrid-like FUSE backend: rclone (Debian's, a real
# FUSE file system, no VFS cache) mounting the test kit's HTTP origin with a time to first byte
# and a bandwidth cap per response, read (a) locally from the rclone mount, (b) through
# `mountshare serve` of that mount with libnfs's nfs-cat on 127.0.0.1 (one READ at a time), and
# (c) through serve with `mountshare bench`, several READs of 1 MiB in flight (8 by default) as
# the kernel client's readahead sends them. Several rounds, rotating which goes first, every cache dropped before
# each read; prints the median MB/s of each, the ratios (through serve / local) and how many
# GETs the origin answered per read (each one costs a first byte). The goal is at least 0.9.
#
#   scripts/bench-debrid.sh [ROUNDS] [SIZE_MIB] [TTFB_MS] [MBIT] [IN_FLIGHT]
#       (defaults 5 200 200 400 8; root). The pipelined read stops after PIPE_SECS (default 30)
#       seconds if it has not read the whole file by then: its MB/s is over what it read.
#
# Needs: rclone, fuse3, libnfs-utils (see .ci/run).
set -euo pipefail

ROUNDS="${1:-5}"
SIZE_MIB="${2:-200}"
TTFB_MS="${3:-200}"
MBIT="${4:-400}"
IN_FLIGHT="${5:-8}"
PIPE_SECS="${PIPE_SECS:-30}"
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

die() { echo "bench: $*" >&2; exit 1; }
for tool in nfs-cat rclone fusermount3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || die "run as root (FUSE with allow_other, and dropping the page cache)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap bench_cleanup EXIT
drop_caches() { sync; echo 3 > /proc/sys/vm/drop_caches; }

echo "building mountshare and the test kit's origin (release)..." >&2
(cd "$REPO" && cargo build --release -p mountshare -p mountshare-testkit --bin mountshare --bin debrid-origin --quiet)
BIN="$TARGET/release/mountshare"
ORIGIN_BIN="$TARGET/release/debrid-origin"
[ -x "$BIN" ] && [ -x "$ORIGIN_BIN" ] || die "no binaries in $TARGET/release"

mkdir -p "$TARGET"
WORK="$(mktemp -d "$TARGET/bench-debrid.XXXXXX")"
mkdir -p "$WORK/origin" "$WORK/mnt"
MNT="$WORK/mnt"
echo "writing a ${SIZE_MIB} MiB file..." >&2
dd if=/dev/urandom of="$WORK/origin/big.bin" bs=1M count="$SIZE_MIB" status=none
SUM="$(md5sum "$WORK/origin/big.bin" | cut -d' ' -f1)"
BYTES=$(( SIZE_MIB * 1024 * 1024 ))

HTTP_PORT="$(free_port)"
"$ORIGIN_BIN" --root "$WORK/origin" --listen "127.0.0.1:$HTTP_PORT" --ttfb-ms "$TTFB_MS" --mbit "$MBIT" \
    --trace >"$WORK/origin.log" 2>&1 &
PIDS+=($!)
wait_port "$HTTP_PORT"

: >"$WORK/rclone.conf"
rclone mount :http: "$MNT" --http-url "http://127.0.0.1:$HTTP_PORT/" --read-only --allow-other \
    --vfs-cache-mode off --config "$WORK/rclone.conf" --log-file "$WORK/rclone.log" --log-level INFO &
PIDS+=($!)
for _ in $(seq 1 300); do
    grep -q " $MNT .* - fuse.rclone " /proc/self/mountinfo && break
    sleep 0.1
done
grep -q " $MNT .* - fuse.rclone " /proc/self/mountinfo || die "rclone did not mount; see $WORK/rclone.log"

MS_PORT="$(free_port)"
"$BIN" serve "$MNT" --listen "127.0.0.1:$MS_PORT" >"$WORK/mountshare.log" 2>&1 &
PIDS+=($!)
wait_port "$MS_PORT"
MS_URL="nfs://127.0.0.1//big.bin?version=3&nfsport=$MS_PORT&mountport=$MS_PORT"

# Both paths must give the right bytes before anything is timed.
drop_caches
got="$(md5sum <"$MNT/big.bin" | cut -d' ' -f1)"
[ "$got" = "$SUM" ] || die "wrong content from the rclone mount: md5 $got, expected $SUM"
drop_caches
got="$(nfs-cat "$MS_URL" | md5sum | cut -d' ' -f1)"
[ "$got" = "$SUM" ] || die "wrong content through mountshare: md5 $got, expected $SUM"

# GETs of the file the origin has answered so far (each one costs a first byte).
gets() { grep -c '^GET /big.bin ' "$WORK/origin.log" || true; }
mbs() { awk -v b="$BYTES" -v a="$1" -v z="$2" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }'; }
read_pipelined() {
    local g0 out
    drop_caches
    g0="$(gets)"
    out="$("$BIN" bench --server "127.0.0.1:$MS_PORT" --mount-port "$MS_PORT" --workload read \
        --file /big.bin --bytes "${SIZE_MIB}MiB" --duration "${PIPE_SECS}s" --in-flight "$IN_FLIGHT" --json)"
    echo "$(echo "$out" | grep -o '"mb_per_s": *[0-9.]*' | head -1 | sed 's/.*: *//' | xargs printf '%.1f') $(( $(gets) - g0 ))"
}
# Each prints "MB/s GETs".
read_local() {
    local t0 t1 g0
    drop_caches
    g0="$(gets)"
    t0="$(now)"
    cat "$MNT/big.bin" >/dev/null
    t1="$(now)"
    echo "$(mbs "$t0" "$t1") $(( $(gets) - g0 ))"
}
read_serve() {
    local t0 t1 g0
    drop_caches
    g0="$(gets)"
    t0="$(now)"
    nfs-cat "$MS_URL" >/dev/null
    t1="$(now)"
    echo "$(mbs "$t0" "$t1") $(( $(gets) - g0 ))"
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

LOCAL_RUNS=""
SERVE_RUNS=""
PIPE_RUNS=""
LOCAL_GETS=""
SERVE_GETS=""
PIPE_GETS=""
for r in $(seq 1 "$ROUNDS"); do
    case $(( r % 3 )) in
        1) order="local serve pipelined" ;;
        2) order="serve pipelined local" ;;
        *) order="pipelined local serve" ;;
    esac
    for which in $order; do
        case $which in
            local) read -r l lg <<<"$(read_local)" ;;
            serve) read -r s sg <<<"$(read_serve)" ;;
            pipelined) read -r p pg <<<"$(read_pipelined)" ;;
        esac
    done
    LOCAL_RUNS="$LOCAL_RUNS $l"
    SERVE_RUNS="$SERVE_RUNS $s"
    PIPE_RUNS="$PIPE_RUNS $p"
    LOCAL_GETS="$LOCAL_GETS $lg"
    SERVE_GETS="$SERVE_GETS $sg"
    PIPE_GETS="$PIPE_GETS $pg"
    echo "round $r/$ROUNDS: local $l MB/s ($lg GETs), nfs-cat via serve $s MB/s ($sg GETs), $IN_FLIGHT in flight via serve $p MB/s ($pg GETs)" >&2
done
LOCAL_MED="$(echo "$LOCAL_RUNS" | median)"
SERVE_MED="$(echo "$SERVE_RUNS" | median)"
PIPE_MED="$(echo "$PIPE_RUNS" | median)"
RATIO="$(awk -v a="$SERVE_MED" -v b="$LOCAL_MED" 'BEGIN { printf "%.2f", a / b }')"
PIPE_RATIO="$(awk -v a="$PIPE_MED" -v b="$LOCAL_MED" 'BEGIN { printf "%.2f", a / b }')"
CAP="$(awk -v m="$MBIT" 'BEGIN { printf "%.1f", m / 8 }')"

cat <<TABLE

Reading one ${SIZE_MIB} MiB file from rclone's FUSE mount of an HTTP origin with ${TTFB_MS} ms to the first byte and ${MBIT} Mbit/s (${CAP} MB/s) per response, ${ROUNDS} rounds, rotating order, caches dropped before every read.

| reader | median MB/s | rounds (MB/s) | origin GETs per read |
|---|---:|---|---|
| cat on the rclone mount (local) | $LOCAL_MED |$LOCAL_RUNS |$LOCAL_GETS |
| nfs-cat → mountshare serve of the mount (1 READ in flight) | $SERVE_MED |$SERVE_RUNS |$SERVE_GETS |
| mountshare bench → serve ($IN_FLIGHT READs of 1 MiB in flight) | $PIPE_MED |$PIPE_RUNS |$PIPE_GETS |

**Ratio through serve / local: $RATIO with nfs-cat, $PIPE_RATIO with $IN_FLIGHT READs in flight** (goal: at least 0.9)

$(uname -r), $(nproc) cores; $(rclone version 2>/dev/null | head -1), libnfs-utils $(dpkg-query -W -f '${Version}' libnfs-utils 2>/dev/null || echo '?').
TABLE
