# syntax=docker/dockerfile:1
#
# oauth-broker container image.
#
#   docker build -t oauth-broker .
#   docker run --rm -v oauth-broker-keys:/keys oauth-broker keys generate --activate
#   docker run --rm -p 8080:8080 -v oauth-broker-keys:/keys \
#       -e PUBLIC_URL=https://oauth.example.org -e SECRETS=... oauth-broker
#
# Two stages: a Rust toolchain image compiles a release binary with OpenSSL
# built from source (feature `vendored-openssl`), and a minimal runtime image
# holds only that binary.

############################################################################
# Builder
############################################################################
FROM rust:1-bookworm AS builder

WORKDIR /src

# Dependencies first, in their own layer: with stub targets in place of the
# real sources, `cargo build` compiles every dependency (the vendored OpenSSL
# included, the slowest part) and the layer is reused until Cargo.toml or
# Cargo.lock changes. Cargo.toml names a bench (`authid`) and an integration
# test (`it`) whose files must exist for the manifest to load; stubs stay in
# place for the second build, which needs neither.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches tests/it \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs tests/it/main.rs \
    && echo 'fn main() {}' > benches/authid.rs \
    && cargo build --release --locked --features vendored-openssl \
    && rm -rf src

# The real sources. Page templates and static files are compiled into the
# binary (include_str!), so they are needed here and not at run time.
COPY src ./src
COPY templates ./templates

# COPY keeps the files' modification times, which may be older than the stub
# build; touching the crate roots makes cargo rebuild the crate itself.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --features vendored-openssl \
    && install -D -m 0755 target/release/oauth-broker /out/oauth-broker \
    && install -d -m 0700 /out/keys

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
      org.opencontainers.image.description="Stateless OAuth 2.0 broker for backup clients: refresh tokens travel inside the user's AuthID as a JWE" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"

COPY --from=builder /out/oauth-broker /usr/local/bin/oauth-broker
# The key directory belongs to the runtime user, so `keys generate` run in
# this image can write to a fresh volume (Docker copies this ownership into
# an empty named volume on first mount). Key files are written 0600.
COPY --from=builder --chown=65532:65532 /out/keys /keys

# Bind every interface inside the container; keys live in the volume.
# SSL_CERT_FILE names the distroless CA bundle for the vendored OpenSSL.
ENV LISTEN=0.0.0.0:8080 \
    KEYS_DIR=/keys \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt

USER 65532:65532
VOLUME /keys
EXPOSE 8080

# `healthcheck` GETs /health on LISTEN (a wildcard address is reached on
# loopback) and exits non-zero unless it answers 200.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/oauth-broker", "healthcheck"]

ENTRYPOINT ["/usr/local/bin/oauth-broker"]
CMD ["serve"]
