# mountshare: one static-enough binary on a small Debian runtime.
#   docker build -t ghcr.io/YOU/mountshare:0.1.0 .
# The image runs as uid 65532 by default (enough for `serve` of a readable directory on a port
# above 1024). `attach` must run as root in a privileged container, and the sidecar server as
# root with CAP_SYS_PTRACE: the manifests in deploy/ set that per container.

FROM rust:1-bookworm AS builder
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml ./
COPY crates ./crates
RUN cargo build --release --locked -p mountshare \
    && strip target/release/mountshare \
    && target/release/mountshare --version

FROM debian:bookworm-slim AS runtime
# cp is used by the colocated variant's init container to copy the binary into an emptyDir.
COPY --from=builder /src/target/release/mountshare /usr/local/bin/mountshare
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mountshare"]
CMD ["--help"]
