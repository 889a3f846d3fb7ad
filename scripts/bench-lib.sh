# Sourced by the benchmark scripts: loopback ports, a clock, and the cleanup of what a script
# started. The sourcing script defines die.
# shellcheck shell=bash
port_is_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
    local p
    while :; do
        p=$(( 20000 + RANDOM % 20000 ))
        if port_is_free "$p"; then echo "$p"; return; fi
    done
}
wait_port() {
    for _ in $(seq 1 300); do
        port_is_free "$1" || return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}
now() { date +%s.%N; }

# What a script started, stopped by bench_cleanup (installed as the EXIT trap): the PIDs of its
# servers, a FUSE mount point, its scratch directory, and the test kit's ganesha (the write end of
# its stdin, and its PID).
PIDS=()
WORK=""
MNT=""
G_KIT_IN=""
G_KIT_PID=""
bench_cleanup() {
    local pid
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [ -n "$MNT" ] && grep -q " $MNT " /proc/self/mountinfo; then
        fusermount3 -u "$MNT" 2>/dev/null || umount -l "$MNT" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    # Closing its stdin (after the children that inherited it are gone) stops the kit's ganesha
    # and the rpcbind it started.
    if [ -n "$G_KIT_IN" ]; then
        exec {G_KIT_IN}>&-
        for _ in $(seq 1 300); do
            kill -0 "$G_KIT_PID" 2>/dev/null || break
            sleep 0.1
        done
    fi
    [ -n "$WORK" ] && rm -rf "$WORK"
}
