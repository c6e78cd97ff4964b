# release-edge container image: a static binary on `scratch`, running as 65532, with the
# sample releases inside, so that `docker run -p 8080:8080 IMAGE` serves them at once.
#
#   docker build -t release-edge .                      # compiles in the `build` stage
#   docker run --rm -p 8080:8080 release-edge
#
# The files of the image are laid out by scripts/image-context.sh, in the `build` stage here
# and on the host in CI, which has no registry to pull the Rust image from: CI compiles the
# same static binary on the host and builds the `runtime` stage from it with
#   podman build --format docker --build-arg DIST_STAGE=prebuilt -f Dockerfile CONTEXT
# where CONTEXT/dist/ is what image-context.sh wrote (scripts/container-check.sh).

# Which stage provides /dist: `build` (compile here) or `prebuilt` (CONTEXT/dist/).
ARG DIST_STAGE=build

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# glibc linked statically (+crt-static): the binary runs in an empty image, and glibc 2.36's
# built-in `files` and `dns` lookups resolve /etc/hosts and resolv.conf without NSS modules.
RUN RUSTFLAGS="-C target-feature=+crt-static" \
        cargo build --release --locked --target x86_64-unknown-linux-gnu \
    && scripts/image-context.sh /dist target/x86_64-unknown-linux-gnu/release/release-edge

FROM scratch AS prebuilt
COPY dist/ /dist/

FROM ${DIST_STAGE} AS dist

FROM scratch AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="release-edge" \
      org.opencontainers.image.description="Self-hosted release-distribution server: artifacts, update feeds and download links from one object store" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=dist /dist/ /
WORKDIR /srv/release-edge
# Not root: nobody's uid in distroless images. Nothing in the image is writable by it.
USER 65532:65532
EXPOSE 8080
# SIGTERM starts the drain: no new connections, in-flight downloads get `shutdown_grace`
# (8 s in this image's config), less than the 10 s `docker stop` waits before SIGKILL.
STOPSIGNAL SIGTERM
# No shell and no curl in the image: the binary probes itself (exit 0 healthy, 1 not).
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/release-edge", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/release-edge"]
CMD ["serve"]
