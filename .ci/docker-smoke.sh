#!/usr/bin/env bash
# Builds the Dockerfile with podman (no Docker engine or registry on these machines) and
# smoke-tests the image: it starts, /healthz answers, a JSON-RPC request reaches the
# simulated node's image (sim/Dockerfile) through it, and SIGTERM stops both with code 0.
# Local stand-ins replace the FROM images: a debootstrapped bookworm for debian:*, and a
# Rust builder made from this machine's toolchain for rust:*.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
IMAGE=${IMAGE:-localhost/cometgate:ci}
NODE_IMAGE=${NODE_IMAGE:-localhost/cometgate-simnode:ci}
WORK=${WORK:-${TMPDIR:-/tmp}/cometgate-oci}; mkdir -p "$WORK"
BASE=localhost/debian:bookworm-slim
RUSTV=$(rustc --version | awk '{print $2}'); BUILDER=localhost/rust:$RUSTV-bookworm
t0=$SECONDS; log() { echo "[docker-smoke $((SECONDS - t0))s] $*"; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# 1. tools: podman and runc from Debian.
need=(); for c in podman runc debootstrap curl; do command -v $c >/dev/null || need+=($c); done
if ((${#need[@]})); then
  log "apt-get install ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman runc debootstrap curl >/dev/null
fi

# 2. This VM's cgroup layout needs runc; rlimits must stay within our hard limits.
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$WORK/containers.conf

# 3. debian:bookworm-slim stand-in, from the Debian mirror.
if ! podman image exists $BASE; then
  MIRROR=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  R=$WORK/rootfs; rm -rf "$R"; log "debootstrap bookworm"
  debootstrap --variant=minbase bookworm "$R" "${MIRROR:-http://deb.debian.org/debian}" >"$WORK/debootstrap.log"
  rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/* "$R"/usr/share/{doc,man,info}/*
  printf 'path-exclude /usr/share/%s/*\n' doc man info locale > "$R/etc/dpkg/dpkg.cfg.d/docker"
  echo 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };' > "$R/etc/apt/apt.conf.d/docker-clean"
  tar --numeric-owner -C "$R" -c . | podman import -q --change 'CMD ["bash"]' - $BASE >/dev/null
  rm -rf "$R"
fi

# 4. rust:*-bookworm stand-in: the base plus this machine's stable toolchain.
if ! podman image exists "$BUILDER"; then
  B=$WORK/builder; rm -rf "$B"; mkdir -p "$B"/rustup/toolchains "$B"/cargo-bin "$B"/ca
  TC=$(rustup default | awk '{print $1}')
  cp -al "$(rustup show home)/toolchains/$TC" "$B/rustup/toolchains/" && rm -rf "$B/rustup/toolchains/$TC/share/doc"
  printf 'version = "12"\ndefault_toolchain = "%s"\nprofile = "minimal"\n' "$TC" > "$B/rustup/settings.toml"
  cp "$(command -v rustup)" "$B/cargo-bin/rustup"
  for b in cargo cargo-clippy cargo-fmt clippy-driver rustc rustdoc rustfmt; do ln -s rustup "$B/cargo-bin/$b"; done
  cp /usr/local/share/ca-certificates/*.crt "$B/ca/" 2>/dev/null || true
  cat > "$B/Dockerfile" <<'DF'
FROM localhost/debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates pkg-config git \
 && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY rustup/ /usr/local/rustup/
COPY cargo-bin/ /usr/local/cargo/bin/
RUN cargo --version && rustc --version
DF
  log "building $BUILDER"; podman build -q -t "$BUILDER" "$B" >/dev/null; rm -rf "$B"
fi

# 5. Tag the stand-ins under the names the Dockerfile's FROM lines use.
RUST_ARG=$(awk -F= '/^ARG RUST_VERSION=/{print $2; exit}' "$ROOT/Dockerfile")
podman tag "$BUILDER" "docker.io/library/rust:${RUST_ARG}-bookworm"
podman tag "$BASE" docker.io/library/debian:bookworm-slim

# 6. Build (the bridge network reaches crates.io) and check the image's user.
log "podman build"
podman build --pull=never --format docker -f "$ROOT/Dockerfile" -t "$IMAGE" "$ROOT"
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
log "image size $(podman image inspect "$IMAGE" --format '{{.Size}}') bytes, user=$user"
[[ "$user" =~ ^(|0|root)(:.*)?$ ]] && { echo "the image runs as root" >&2; exit 1; }
podman image inspect "$IMAGE" --format '{{.Config.Healthcheck}}' | grep -q healthz || { echo "no HEALTHCHECK" >&2; exit 1; }

# 7. The simulated node's image, which docker-compose.yml runs as its `node` service.
log "podman build sim/Dockerfile"
podman build --pull=never --format docker -f "$ROOT/sim/Dockerfile" -t "$NODE_IMAGE" "$ROOT"

# 8. Run both on the host network, as an operator would run them side by side.
NODE_PORT=$(free_port); GW_PORT=$(free_port); OPS_PORT=$(free_port)
node=simnode-smoke-$$; name=cometgate-smoke-$$
cleanup() { podman rm -f -t 0 $name $node >/dev/null 2>&1 || true; }
trap cleanup EXIT
podman run -d --name $node --network host "$NODE_IMAGE" \
  --listen "127.0.0.1:$NODE_PORT" --block-interval 200ms >/dev/null
cat > "$WORK/smoke.toml" <<CONF
[server]
listen = "127.0.0.1:$GW_PORT"
[upstream]
url = "http://127.0.0.1:$NODE_PORT"
[metrics]
listen = "127.0.0.1:$OPS_PORT"
CONF
chmod 644 "$WORK/smoke.toml"
podman run -d --name $name --network host -v "$WORK/smoke.toml:/etc/cometgate/cometgate.toml:ro" "$IMAGE" >/dev/null
for _ in $(seq 100); do
  curl -fsS -m 2 "http://127.0.0.1:$OPS_PORT/healthz" >/dev/null 2>&1 && break
  [[ $(podman inspect $name --format '{{.State.Running}}') == true ]] || break
  sleep 0.2
done
curl -fsS -m 2 "http://127.0.0.1:$OPS_PORT/healthz" || { podman logs $name; exit 1; }
answer=$(curl -fsS -m 5 -H 'content-type: application/json' \
  -d '{"jsonrpc":"2.0","id":1,"method":"status"}' "http://127.0.0.1:$GW_PORT/")
echo "$answer" | grep -q '"latest_block_height"' || { echo "no status through the container: $answer" >&2; podman logs $name; podman logs $node; exit 1; }
log "status answered through the container"

# 9. SIGTERM: both exit cleanly with code 0, neither waits for SIGKILL.
for c in $name $node; do
  podman stop -t 10 $c >/dev/null
  code=$(podman inspect $c --format '{{.State.ExitCode}}')
  podman logs $c 2>&1 | tail -2
  [[ $code == 0 ]] || { echo "$c: exit code $code on SIGTERM (137 = killed)" >&2; exit 1; }
done
log "docker smoke test OK"
