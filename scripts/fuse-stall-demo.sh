#!/usr/bin/env bash
# The FUSE-layer stall on the host, no NFS involved: with 40 reads hung in a FUSE daemon that
# keeps the kernel's default max_background (12, as rclone and go-fuse do), the time of an
# md5sum of a healthy 5 MiB file on the same mount; then the same once the connection is tuned
# the way `mountshare serve` tunes it (max_background 256, congestion_threshold 192). The FUSE
# daemon is the test kit's hangfs. Prints figures; asserts nothing.
#
#   scripts/fuse-stall-demo.sh [--hung N] [--cap SECONDS]   (default 40 and 30; needs root)
#
# Needs: /dev/fuse, fuse3 (see .ci/run).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
TARGET="${CARGO_TARGET_DIR:-$REPO/target}"

die() { echo "fuse-stall-demo: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "run as root (it mounts FUSE with allow_other and writes /sys/fs/fuse/connections)"
[ -e /dev/fuse ] || die "/dev/fuse is missing"

echo "building hangfs and the demo (release)..." >&2
(cd "$REPO" && cargo build --release -p mountshare-testkit --bin hangfs --example fuse_stall_demo --quiet)
echo "$(uname -r), $(nproc) cores" >&2
exec "$TARGET/release/examples/fuse_stall_demo" "$@"
