# Sourced by the benchmark scripts: loopback ports and a clock. The sourcing script defines die.
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
    local i
    for i in $(seq 1 300); do
        port_is_free "$1" || return 0
        sleep 0.1
    done
    die "nothing listens on 127.0.0.1:$1"
}
now() { date +%s.%N; }
