# mountshare: the static binary and nothing else, for linux/amd64 and linux/arm64.
#
# The binaries are built first (no compiler runs in here), one per architecture:
#   scripts/build-static                        # dist/amd64/mountshare, dist/arm64/mountshare
#   docker buildx build --platform linux/amd64,linux/arm64 -t ghcr.io/OWNER/mountshare:0.1.0 --push .
# The release workflow (.github/workflows/release.yml) does exactly this on a v* tag, and CI
# assembles the same image without a container engine (scripts/oci-image), checking that its
# entrypoint, user and environment are the ones written here.
#
# The image runs as uid 65532 by default (enough for `serve` of a readable directory on a port
# above 1024, and for `install`). `attach` must run as root in a privileged container, and the
# sidecar server as root with CAP_SYS_PTRACE: the manifests in deploy/ set that per container.
# There is no shell, no cp, no tar: `mountshare install DIR` copies the binary out of the image.
FROM scratch
ARG TARGETARCH
COPY --chmod=0755 dist/${TARGETARCH}/mountshare /usr/local/bin/mountshare
ENV PATH=/usr/local/bin
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/mountshare"]
CMD ["--help"]
