# cometgate: a protective, caching gateway in front of a CometBFT node's RPC port.
# Multi-stage: build with the official Rust image, run on debian-slim as a non-root user.
# Kept buildable by podman 4.3 (no RUN heredocs, no COPY --link).
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
# Manifests first, so the dependency build is cached until they change.
COPY Cargo.toml Cargo.lock ./
COPY sim/Cargo.toml sim/Cargo.toml
COPY load/Cargo.toml load/Cargo.toml
# The simulated node and the harness are only dev-dependencies and tools: their members
# stay stubs, which is all the workspace needs to build the gateway.
RUN mkdir -p src sim/src/bin load/src/bin benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > sim/src/bin/simnode.rs && touch sim/src/lib.rs \
 && echo 'fn main() {}' > load/src/bin/cometgate-load.rs && touch load/src/lib.rs \
 && echo 'fn main() {}' > benches/hit.rs \
 && cargo build --release --locked -p cometgate --bin cometgate \
 && rm -rf src benches
COPY src src
COPY benches benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked -p cometgate --bin cometgate

FROM debian:bookworm-slim
# curl serves the HEALTHCHECK; ca-certificates for an https upstream behind a proxy.
# Versions follow the bookworm point release the base image pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/cometgate /usr/local/bin/cometgate
COPY config/docker.toml /etc/cometgate/cometgate.toml
USER 10001:10001
# 26657: the RPC port clients already use; 9464: metrics, health and admin (keep it private).
EXPOSE 26657 9464
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:9464/healthz"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/cometgate"]
CMD ["--config", "/etc/cometgate/cometgate.toml"]
