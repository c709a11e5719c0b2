# syntax=docker/dockerfile:1
#
# oauth-broker container image.
#
#   docker build -t oauth-broker .
#   docker run --rm -v oauth-broker-keys:/keys oauth-broker keys generate --activate
#   docker run --rm -p 8080:8080 -v oauth-broker-keys:/keys -v oauth-broker-data:/data \
#       -e PUBLIC_URL=https://oauth.example.org -e SECRETS=... oauth-broker
#
# A Rust toolchain image compiles a release binary with OpenSSL built from
# source (feature `vendored-openssl`), and a minimal runtime image holds only
# that binary.
#
# Dependencies are compiled in a layer of their own with cargo-chef: the
# planner reduces Cargo.toml and Cargo.lock to a recipe (the dependency graph
# and a skeleton of every target the manifest declares), and the builder
# compiles the dependencies from that recipe alone. The layer is reused
# until the recipe changes, and the recipe is derived from the manifest
# itself, so a target added to Cargo.toml can never leave the layer behind.
#
# `scripts/replay-builder.py` replays the builder stage (with the stages it
# starts from) on a Debian 12 machine with Rust, without a container engine,
# and CI runs it. It follows WORKDIR, COPY, ENV, ARG and RUN; RUN lines keep
# to paths relative to WORKDIR so the replay can follow them.

############################################################################
# Toolchain: the Rust image of the Debian release the runtime image is built
# on (glibc must match), with cargo-chef at a pinned version.
############################################################################
FROM rust:1.95-bookworm AS chef
RUN cargo install --locked cargo-chef@0.1.78
WORKDIR /src

############################################################################
# Planner: the recipe. It sees the whole build context, but only the recipe
# goes on, so a change to the sources alone does not invalidate the
# dependency layer below.
############################################################################
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

############################################################################
# Builder
############################################################################
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Every dependency, the vendored OpenSSL included (the slowest part), with
# the same profile, features and lock file as the build below.
RUN cargo chef cook --release --locked --features vendored-openssl --recipe-path recipe.json

# The sources: every target Cargo.toml declares is present (benches and
# integration tests too, or cargo refuses the manifest), templates and static
# files are compiled into the binary (include_str!). .dockerignore keeps out
# what is not needed or must never reach an image.
COPY . .
RUN cargo build --release --locked --features vendored-openssl --bin oauth-broker \
    && install -D -m 0755 target/release/oauth-broker out/oauth-broker \
    && install -d -m 0700 out/keys out/data

############################################################################
# Runtime
############################################################################
# distroless/cc-debian12 rather than debian:bookworm-slim: it holds exactly
# what the binary needs (glibc and libgcc_s of the same Debian 12 release as
# the builder, CA certificates for TLS to the providers, tzdata) and no shell
# or package manager, so there is less to patch and nothing to exec into.
# OpenSSL is linked statically (vendored), so no libssl is needed. The
# `nonroot` variant defines the user 65532 used below. Every operation,
# health check included, goes through the binary itself.
FROM gcr.io/distroless/cc-debian12:nonroot

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown

LABEL org.opencontainers.image.title="oauth-broker" \
      org.opencontainers.image.description="OAuth 2.0 broker for backup clients: refresh tokens travel inside the user's AuthID as a JWE" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /src/out/oauth-broker /usr/local/bin/oauth-broker
# The key and data directories belong to the runtime user, so `keys
# generate` and the embedded store can write to fresh volumes (Docker copies
# this ownership into an empty named volume on first mount). Key files are
# written 0600.
COPY --from=builder --chown=65532:65532 /src/out/keys /keys
COPY --from=builder --chown=65532:65532 /src/out/data /data

# Bind every interface inside the container; keys and the embedded store
# (the default when STORE is unset) live in volumes. SSL_CERT_FILE names the
# distroless CA bundle for the vendored OpenSSL.
ENV LISTEN=0.0.0.0:8080 \
    KEYS_DIR=/keys \
    DATA_DIR=/data \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
VOLUME ["/keys", "/data"]
EXPOSE 8080

# `healthcheck` GETs /health on LISTEN (a wildcard address is reached on
# loopback) and exits non-zero unless it answers 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/oauth-broker", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/oauth-broker"]
CMD ["serve"]
