#!/usr/bin/env bash
# Compare `mountshare serve` and nfs-ganesha (VFS) serving the same directory, with
# `mountshare bench`: sequential READ throughput against requests in flight (1 to 32), one
# connection, fixed bytes per point. Writes, into OUT (default ./bench-compare-out):
#   results.md      the markdown table (also printed)
#   throughput.png  MB/s against requests in flight, one line per server
#   <server>-<n>-<r>.json  the raw `mountshare bench --json` output of each run
#   env.txt         kernel, CPU, versions and the exact parameters
#
# Usage: scripts/bench-compare.sh [DIR]
#   DIR: a directory on ext4/xfs/btrfs to serve (default: a fresh one holding a FILE_SIZE file).
# Environment: OUT, FILE_SIZE (256MiB), BYTES per run (1GiB), READ_SIZE (1MiB),
#   IN_FLIGHT ("1 2 4 8 16 32"), REPEAT runs per point (5; the table shows the median),
#   PYTHON (python3, needs matplotlib for the PNG).
# Needs: cargo, ganesha.nfsd (nfs-ganesha + nfs-ganesha-vfs), rpcbind, python3. Run as root
# (ganesha). Uses only 127.0.0.1; stops everything it started.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${OUT:-$PWD/bench-compare-out}"
FILE_SIZE="${FILE_SIZE:-256MiB}"
BYTES="${BYTES:-1GiB}"
READ_SIZE="${READ_SIZE:-1MiB}"
IN_FLIGHT="${IN_FLIGHT:-1 2 4 8 16 32}"
REPEAT="${REPEAT:-5}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

pids=()
work="$(mktemp -d /var/tmp/mountshare-bench-compare.XXXXXX)"
cleanup() {
    for p in "${pids[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${pids[@]}"; do
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1" >&2
    return 1
}

echo "building mountshare (release)..." >&2
(cd "$here" && cargo build --release -q -p mountshare)
target="${CARGO_TARGET_DIR:-$here/target}"
bin="$target/release/mountshare"

if [[ $# -ge 1 ]]; then
    dir="$(cd "$1" && pwd)"
    file="$(cd "$dir" && find . -type f -printf '%s %P\n' | sort -nr | head -1 | cut -d' ' -f2-)"
    [[ -n "$file" ]] || { echo "no file in $dir" >&2; exit 2; }
else
    dir="$work/export"
    mkdir -p "$dir"
    file="big.bin"
    size=$("$PYTHON" -c "import sys; u={'KiB':1<<10,'MiB':1<<20,'GiB':1<<30}; s=sys.argv[1]; print(int(s[:-3])*u[s[-3:]] if s[-3:] in u else int(s))" "$FILE_SIZE")
    head -c "$size" /dev/urandom > "$dir/$file"
fi
# Read it once so that both servers start from a warm page cache.
cat "$dir/$file" > /dev/null

ms_port=$(free_port)
"$bin" serve "$dir" --listen "127.0.0.1:$ms_port" > "$work/serve.log" 2>&1 &
pids+=($!)
wait_port "$ms_port"

if ! (exec 3<>/dev/tcp/127.0.0.1/111) 2>/dev/null; then
    rpcbind -f -w &
    pids+=($!)
    wait_port 111
fi
g_nfs=$(free_port)
g_mnt=$(free_port)
mkdir -p "$work/ganesha/recovery"
cat > "$work/ganesha/ganesha.conf" <<CONF
NFS_CORE_PARAM { Bind_addr = 127.0.0.1; NFS_Port = $g_nfs; MNT_Port = $g_mnt; Protocols = 3;
    Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false; mount_path_pseudo = false; }
NFSV4 { Graceless = true; RecoveryBackend = fs; RecoveryRoot = "$work/ganesha/recovery"; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT { Export_Id = 1; Path = "$dir"; Pseudo = "$dir"; Protocols = 3; Transports = TCP;
    Access_Type = RO; Squash = No_Root_Squash; SecType = sys; FSAL { Name = VFS; } }
CONF
ganesha.nfsd -F -f "$work/ganesha/ganesha.conf" -L "$work/ganesha/ganesha.log" \
    -p "$work/ganesha/ganesha.pid" -N NIV_EVENT &
pids+=($!)
wait_port "$g_nfs"
wait_port "$g_mnt"
for _ in $(seq 100); do grep -q "NFS SERVER INITIALIZED" "$work/ganesha/ganesha.log" 2>/dev/null && break; sleep 0.1; done

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "kernel: $(uname -r)"
    echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') x $(nproc)"
    echo "mountshare: $(cd "$here" && git rev-parse --short HEAD)"
    echo "ganesha: $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo '?')"
    echo "file: $file ($(stat -c %s "$dir/$file") bytes), bytes per point: $BYTES, read size: $READ_SIZE, connections: 1"
    echo "in flight: $IN_FLIGHT, runs per point: $REPEAT (median shown)"
} > "$OUT/env.txt"

# Rounds over the whole sweep, the two servers interleaved, so that a disturbance of the machine
# spreads over every point instead of spoiling one.
for r in $(seq "$REPEAT"); do
    for n in $IN_FLIGHT; do
        echo "round $r/$REPEAT, in flight $n" >&2
        "$bin" bench --server "127.0.0.1:$ms_port" --file "/$file" --bytes "$BYTES" \
            --read-size "$READ_SIZE" --in-flight "$n" --json > "$OUT/mountshare-$n-$r.json"
        "$bin" bench --server "127.0.0.1:$g_nfs" --export "$dir" --file "/$file" --bytes "$BYTES" \
            --read-size "$READ_SIZE" --in-flight "$n" --json > "$OUT/ganesha-$n-$r.json"
    done
done

"$PYTHON" - "$OUT" "$REPEAT" $IN_FLIGHT <<'PY'
import json, sys, os
out, repeat, flights = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]
servers = [("mountshare", "mountshare serve"), ("ganesha", "nfs-ganesha (VFS)")]
rows, series, spread = [], {k: [] for k, _ in servers}, {k: [] for k, _ in servers}
for n in flights:
    row = [str(n)]
    for key, _ in servers:
        runs = []
        for r in range(1, repeat + 1):
            p = json.load(open(os.path.join(out, f"{key}-{n}-{r}.json")))["phases"][0]
            assert p["bytes"] == p["bytes_requested"] and p["errors"] == 0, (key, n, r, p)
            runs.append(p)
        runs.sort(key=lambda p: p["mb_per_s"])
        med = runs[len(runs) // 2]
        series[key].append(med["mb_per_s"])
        spread[key].append((runs[0]["mb_per_s"], runs[-1]["mb_per_s"]))
        lat = med["latency"]
        row += [f'{med["mb_per_s"]:.0f} ({runs[0]["mb_per_s"]:.0f}-{runs[-1]["mb_per_s"]:.0f})',
                f'{lat["p50_us"]/1000:.2f}', f'{lat["p99_us"]/1000:.2f}']
    rows.append(row)
head = ["in flight"] + [f"{label} {m}" for _, label in servers for m in ("MB/s median (min-max)", "p50 ms", "p99 ms")]
md = "| " + " | ".join(head) + " |\n|" + "---|" * len(head) + "\n"
md += "".join("| " + " | ".join(r) + " |\n" for r in rows)
open(os.path.join(out, "results.md"), "w").write(md)
print(md)
try:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    print("matplotlib is missing (pip install matplotlib): no PNG written", file=sys.stderr)
    sys.exit(0)
env = open(os.path.join(out, "env.txt")).read().splitlines()
fig, ax = plt.subplots(figsize=(7, 4.2))
for key, label in servers:
    line, = ax.plot(flights, series[key], marker="o", label=label)
    lo = [a for a, _ in spread[key]]
    hi = [b for _, b in spread[key]]
    ax.fill_between(flights, lo, hi, color=line.get_color(), alpha=0.15)
ax.set_xscale("log", base=2)
ax.set_xticks(flights)
ax.set_xticklabels([str(n) for n in flights])
ax.set_xlabel("READ requests in flight (1 connection)")
ax.set_ylabel(f"MB/s (10^6 B/s), median of {repeat}, band: min-max")
ax.set_ylim(bottom=0)
ax.set_title("Sequential READ over 127.0.0.1, same directory")
ax.grid(True, alpha=0.3)
ax.legend()
fig.text(0.01, 0.01, [l for l in env if l.startswith("file:")][0], fontsize=7, alpha=0.7)
fig.tight_layout(rect=(0, 0.03, 1, 1))
fig.savefig(os.path.join(out, "throughput.png"), dpi=110)
print(f"wrote {out}/results.md and {out}/throughput.png", file=sys.stderr)
PY
