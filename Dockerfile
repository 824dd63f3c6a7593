# syntax=docker/dockerfile:1
#
# One image for the Sluice services: sluice-ingest, sluice-writer, and the
# single-process `sluice` for trying it out. Pick one with the command:
#   docker run --env-file .env sluice sluice-writer serve
# Nothing secret is baked in: PII_KEY and credentials come from the
# environment (or a mounted secret file, PII_KEY_FILE) at run time.

ARG RUST_VERSION=1.95

# --- build: the full toolchain image (C compiler for the bundled SQLite and
# aws-lc); its size does not matter, only the binaries leave it.
FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binaries
# are copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p sluice-ingest -p sluice-writer -p sluice \
    && mkdir -p /out \
    && cp target/release/sluice-ingest target/release/sluice-writer target/release/sluice /out/

# --- runtime: glibc to match the build stage, CA roots for TLS to AWS and
# RDS, nothing else (no compiler, no shell tools beyond Debian's base).
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/sluice --create-home sluice
COPY --from=build /out/sluice-ingest /out/sluice-writer /out/sluice /usr/local/bin/
# Relative paths (sqlite://data/..., PII_KEY_FILE=data/pii.key) land in the
# service user's own directory.
WORKDIR /var/lib/sluice
# In a container the services must listen beyond loopback; logs go to a
# collector, so JSON.
ENV INGEST_ADDR=0.0.0.0:8080 \
    WRITER_ADDR=0.0.0.0:9090 \
    LOG_FORMAT=json
EXPOSE 8080 9090
USER sluice:sluice
CMD ["sluice-writer", "serve"]
