#!/usr/bin/env bash
# Read throughput of one 1 GiB file with libnfs's nfs-cat, from `mountshare serve` and from
# nfs-ganesha's VFS export of the same directory, both on 127.0.0.1, in the same run.
# Several rounds, alternating which server goes first; prints the median MB/s of each, their
# ratio (mountshare / ganesha) and an iperf3 loopback measurement as the ceiling.
#
#   scripts/bench-vs-ganesha.sh [ROUNDS]      (default 5; needs root for ganesha)
#
# Needs: libnfs-utils, nfs-ganesha, nfs-ganesha-vfs, rpcbind, iperf3 (see .ci/run).
set -euo pipefail

ROUNDS="${1:-5}"
SIZE_MIB=1024
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

die() { echo "bench: $*" >&2; exit 1; }
for tool in nfs-cat ganesha.nfsd rpcbind iperf3 cargo; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || die "run as root (nfs-ganesha's VFS export needs it)"

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap bench_cleanup EXIT

echo "building mountshare and the test kit's ganesha runner (release)..." >&2
(cd "$REPO" && cargo build --release -p mountshare --quiet \
    && cargo build --release -p mountshare-testkit --example ganesha --quiet)
BIN="$TARGET/release/mountshare"
[ -x "$BIN" ] || die "no binary at $BIN"
KIT_GANESHA="$TARGET/release/examples/ganesha"
[ -x "$KIT_GANESHA" ] || die "no binary at $KIT_GANESHA"

# On the disk, not tmpfs: ganesha's VFS FSAL needs name_to_handle_at(2).
mkdir -p "$TARGET"
WORK="$(mktemp -d "$TARGET/bench.XXXXXX")"
EXPORT="$WORK/export"
mkdir -p "$EXPORT"
echo "writing a ${SIZE_MIB} MiB file..." >&2
dd if=/dev/urandom of="$EXPORT/big.bin" bs=1M count="$SIZE_MIB" status=none
SUM="$(md5sum "$EXPORT/big.bin" | cut -d' ' -f1)"
BYTES=$(( SIZE_MIB * 1024 * 1024 ))

MS_PORT="$(free_port)"
"$BIN" serve "$EXPORT" --listen "127.0.0.1:$MS_PORT" >"$WORK/mountshare.log" 2>&1 &
PIDS+=($!)
wait_port "$MS_PORT"

G_NFS="$(free_port)"
G_MNT="$(free_port)"
while [ "$G_MNT" = "$G_NFS" ] || [ "$G_MNT" = "$MS_PORT" ]; do G_MNT="$(free_port)"; done
# ganesha exactly as the tests run it (crates/testkit/src/ganesha.rs: its configuration, and
# rpcbind when nothing answers on port 111), until the runner's stdin closes.
exec {G_KIT_IN}> >(exec "$KIT_GANESHA" "$EXPORT" "$G_NFS" "$G_MNT" >"$WORK/ganesha.ready")
G_KIT_PID=$!
for i in $(seq 1 900); do
    grep -qx ready "$WORK/ganesha.ready" 2>/dev/null && break
    kill -0 "$G_KIT_PID" 2>/dev/null && [ "$i" -lt 900 ] || die "ganesha did not start (see above)"
    sleep 0.1
done

MS_URL="nfs://127.0.0.1//big.bin?version=3&nfsport=$MS_PORT&mountport=$MS_PORT"
G_URL="nfs://127.0.0.1$EXPORT/big.bin?version=3&nfsport=$G_NFS&mountport=$G_MNT"

# Both must serve the right bytes before anything is timed (this also warms the page cache).
for url in "$MS_URL" "$G_URL"; do
    got="$(nfs-cat "$url" | md5sum | cut -d' ' -f1)"
    [ "$got" = "$SUM" ] || die "wrong content from $url: md5 $got, expected $SUM"
done

read_mbs() {
    local t0 t1
    t0="$(now)"
    nfs-cat "$1" >/dev/null
    t1="$(now)"
    awk -v b="$BYTES" -v a="$t0" -v z="$t1" 'BEGIN { printf "%.1f", b / 1e6 / (z - a) }'
}
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.1f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

MS_RUNS=""
G_RUNS=""
for r in $(seq 1 "$ROUNDS"); do
    if [ $(( r % 2 )) -eq 1 ]; then
        MS_RUNS="$MS_RUNS $(read_mbs "$MS_URL")"
        G_RUNS="$G_RUNS $(read_mbs "$G_URL")"
    else
        G_RUNS="$G_RUNS $(read_mbs "$G_URL")"
        MS_RUNS="$MS_RUNS $(read_mbs "$MS_URL")"
    fi
    echo "round $r/$ROUNDS: mountshare ${MS_RUNS##* } MB/s, ganesha ${G_RUNS##* } MB/s" >&2
done
MS_MED="$(echo "$MS_RUNS" | median)"
G_MED="$(echo "$G_RUNS" | median)"
RATIO="$(awk -v a="$MS_MED" -v b="$G_MED" 'BEGIN { printf "%.2f", a / b }')"

IPERF_PORT="$(free_port)"
iperf3 -s -B 127.0.0.1 -p "$IPERF_PORT" >/dev/null 2>&1 &
IPERF_PID=$!
PIDS+=("$IPERF_PID")
# No port probe here: iperf3's server takes any connection for a test and then resets the next.
IPERF="n/a"
for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.3
    got="$(iperf3 -c 127.0.0.1 -p "$IPERF_PORT" -t 5 -f m 2>/dev/null | awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") printf "%.1f", $(i-1) / 8 }')" || true
    if [ -n "$got" ]; then IPERF="$got"; break; fi
done

cat <<TABLE

Reading one ${SIZE_MIB} MiB file with \`nfs-cat\` over 127.0.0.1, ${ROUNDS} rounds, alternating order (page cache warm on the server side).

| reader → server | median MB/s | rounds (MB/s) |
|---|---:|---|
| nfs-cat → mountshare serve | $MS_MED |$MS_RUNS |
| nfs-cat → nfs-ganesha (VFS) | $G_MED |$G_RUNS |
| iperf3 loopback (ceiling) | $IPERF | |

**Ratio mountshare / ganesha: $RATIO**

$(uname -r), $(nproc) cores; nfs-ganesha $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo '?'), libnfs-utils $(dpkg-query -W -f '${Version}' libnfs-utils 2>/dev/null || echo '?').
TABLE
