#!/usr/bin/env bash
# Runs docker-compose.yml as written, with podman-compose (no Docker engine or registry
# on these machines; podman-compose reads the same file): both images build, `status`
# answers through cometgate on the published port, the node's port is not published, the
# cometgate image runs as non-root with a HEALTHCHECK, and `down` stops both services
# with exit code 0. Then docker-compose.replicas.yml: two replicas share an answer
# through its Redis, and `down` stops all four services with exit code 0.
# Local stand-ins replace the FROM images: a debootstrapped bookworm for debian:*, and a
# Rust builder made from this machine's toolchain for rust:*. The Debian mirror is the
# one this machine's apt sources name; none is written here.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=${WORK:-${TMPDIR:-/tmp}/cometgate-oci}; mkdir -p "$WORK"
PROJECT=${PROJECT:-cgsmoke$$}
BASE=localhost/debian:bookworm-slim
RUSTV=$(rustc --version | awk '{print $2}'); BUILDER=localhost/rust:$RUSTV-bookworm
t0=$SECONDS; log() { echo "[docker-smoke $((SECONDS - t0))s] $*"; }
fail() { echo "docker-smoke: $*" >&2; exit 1; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

# The first Debian archive URI in this machine's apt sources (deb822 .sources files, then
# one-line .list entries), the security archive aside.
debian_mirror() {
  {
    cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
      awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }'
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
      awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z+]+:\/\//) { print $i; break } }'
  } | grep -v -e security -e '^cdrom:' | head -n 1
}

# 1. tools: podman, podman-compose and runc from Debian (aardvark-dns resolves service
#    names on the compose network).
#    netavark sets up the network with iptables, which a fresh machine may lack: without
#    it every RUN fails with "netavark: No such file or directory".
need=(); for c in podman podman-compose runc debootstrap curl iptables; do
  command -v $c >/dev/null || need+=($c)
done
if ((${#need[@]})); then
  log "apt-get install (missing: ${need[*]})"
  DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q podman podman-compose runc debootstrap curl \
    iptables netavark aardvark-dns >/dev/null
fi

# 2. This VM's cgroup layout needs runc; rlimits must stay within our hard limits.
cat > "$WORK/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[engine]
runtime = "runc"
CONF
export CONTAINERS_CONF=$WORK/containers.conf
# podman-compose builds with `podman build`, whose default OCI format drops HEALTHCHECK.
export BUILDAH_FORMAT=docker

# 3. debian:bookworm-slim stand-in, from the machine's Debian mirror.
if ! podman image exists $BASE; then
  MIRROR=$(debian_mirror || true)
  [[ -n "$MIRROR" ]] || fail "no Debian mirror in this machine's apt sources \
(/etc/apt/sources.list, /etc/apt/sources.list.d/): add one, or provide $BASE yourself"
  R=$WORK/rootfs; rm -rf "$R"; log "debootstrap bookworm from $MIRROR"
  debootstrap --variant=minbase bookworm "$R" "$MIRROR" >"$WORK/debootstrap.log" ||
    fail "debootstrap from $MIRROR failed: see $WORK/debootstrap.log"
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

# 5. Tag the stand-ins under the names the Dockerfiles' FROM lines use, so the builds
#    below find them locally and pull nothing.
RUST_ARG=$(awk -F= '/^ARG RUST_VERSION=/{print $2; exit}' "$ROOT/Dockerfile")
podman tag "$BUILDER" "docker.io/library/rust:${RUST_ARG}-bookworm"
podman tag "$BASE" docker.io/library/debian:bookworm-slim

# 6. The compose file as written, on free host ports.
COMETGATE_PORT=$(free_port); COMETGATE_METRICS_PORT=$(free_port)
export COMETGATE_PORT COMETGATE_METRICS_PORT
compose() { (cd "$ROOT" && podman-compose -p "$PROJECT" -f docker-compose.yml "$@"); }
# podman-compose 1.0 leaves the project's network behind after `down`.
cleanup() { compose down >/dev/null 2>&1 || true; podman network rm -f "${PROJECT}_default" >/dev/null 2>&1 || true; }
trap cleanup EXIT
log "podman-compose build"
compose build
podman image exists "${PROJECT}_cometgate" || fail "podman-compose build did not build cometgate"
podman image exists cometgate-sim:compose || fail "podman-compose build did not build the node"
log "podman-compose up -d (RPC on $COMETGATE_PORT, metrics on $COMETGATE_METRICS_PORT)"
compose up -d
container_of() {
  podman ps -a --filter "label=com.docker.compose.project=$PROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}
gw=$(container_of cometgate); node=$(container_of node); node2=$(container_of node2)
[[ -n "$gw" && -n "$node" && -n "$node2" ]] || { podman ps -a; fail "the compose services did not start"; }
logs() { podman logs "$gw" 2>&1 | tail -20; podman logs "$node" 2>&1 | tail -5; }

# 7. The image: non-root, with a HEALTHCHECK.
image=$(podman inspect "$gw" --format '{{.Image}}')
user=$(podman image inspect "$image" --format '{{.Config.User}}')
log "cometgate image size $(podman image inspect "$image" --format '{{.Size}}') bytes, user=$user"
[[ "$user" =~ ^(|0|root)(:.*)?$ ]] && fail "the image runs as root"
# Read into a variable before matching: with pipefail, `grep -q` closing the pipe at its
# first match can fail the producer with SIGPIPE, and the check with it.
healthcheck=$(podman image inspect "$image" --format '{{.Config.Healthcheck}}')
grep -q healthz <<<"$healthcheck" || fail "no HEALTHCHECK"

# 8. status through cometgate on the published port; the node's port is not published.
for _ in $(seq 150); do
  curl -fsS -m 2 "http://127.0.0.1:$COMETGATE_METRICS_PORT/healthz" >/dev/null 2>&1 && break
  [[ $(podman inspect "$gw" --format '{{.State.Running}}') == true ]] || break
  sleep 0.2
done
curl -fsS -m 2 "http://127.0.0.1:$COMETGATE_METRICS_PORT/healthz" >/dev/null || { logs; fail "no /healthz on the published metrics port"; }
answer=""
for _ in $(seq 50); do
  answer=$(curl -sS -m 5 -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"status"}' "http://127.0.0.1:$COMETGATE_PORT/" || true)
  grep -q '"latest_block_height"' <<<"$answer" && break
  sleep 0.2
done
grep -q '"latest_block_height"' <<<"$answer" || { logs; fail "no status through cometgate on $COMETGATE_PORT: $answer"; }
log "status answered through cometgate on the published port"
# Both nodes are asked "latest" questions: each has a head, on the same chain, in step.
eligible=""
for _ in $(seq 100); do
  eligible=$(curl -fsS -m 2 "http://127.0.0.1:$COMETGATE_METRICS_PORT/metrics" |
    grep -c '^cometgate_upstream_node_eligible{node="http://node2\?:26657/"} 1$' || true)
  [[ "$eligible" == 2 ]] && break
  sleep 0.2
done
[[ "$eligible" == 2 ]] || { logs; fail "not both nodes are eligible: $eligible"; }
log "both nodes are eligible"
for n in "$node" "$node2"; do
  published=$(podman port "$n")
  [[ -z "$published" ]] || fail "a node's port is published: $published"
done
gw_ports=$(podman port "$gw")
grep -q "26657/tcp -> .*:$COMETGATE_PORT" <<<"$gw_ports" ||
  fail "cometgate's 26657 is not published: $gw_ports"
log "the node's port is not published"

# 9. down: both services stop on SIGTERM with exit code 0 (137 would be a SIGKILL after
#    the stop timeout). Their exit codes are read back from podman's events.
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
compose down || fail "podman-compose down failed"
trap cleanup EXIT
codes=$(podman events --stream=false --since "$since" --filter event=died \
  --format '{{.Name}} {{.ContainerExitCode}}')
for c in "$gw" "$node" "$node2"; do
  code=$(awk -v c="$c" '$1 == c { print $2 }' <<<"$codes" | tail -n 1)
  [[ "$code" == 0 ]] || fail "$c: exit code '${code:-none seen}' on down (137 = killed); events: $codes"
done
[[ -z "$(podman ps -a --filter "label=com.docker.compose.project=$PROJECT" --format '{{.Names}}')" ]] ||
  fail "containers left after down"
podman image rm -f cometgate-sim:compose "${PROJECT}_cometgate" >/dev/null 2>&1 || true

# 10. docker-compose.replicas.yml as written: the two replicas reach the compose file's
#     Redis, an answer one replica fetched is served by the other as "shared", and `down`
#     stops all four services with exit code 0.
RPROJECT=${PROJECT}r
COMETGATE_A_PORT=$(free_port); COMETGATE_B_PORT=$(free_port)
COMETGATE_A_METRICS_PORT=$(free_port); COMETGATE_B_METRICS_PORT=$(free_port)
export COMETGATE_A_PORT COMETGATE_B_PORT COMETGATE_A_METRICS_PORT COMETGATE_B_METRICS_PORT
rcompose() { (cd "$ROOT" && podman-compose -p "$RPROJECT" -f docker-compose.replicas.yml "$@"); }
rcleanup() { rcompose down >/dev/null 2>&1 || true; podman network rm -f "${RPROJECT}_default" >/dev/null 2>&1 || true; }
trap 'cleanup; rcleanup' EXIT
log "replicas: podman-compose build"
rcompose build
log "replicas: podman-compose up -d"
rcompose up -d
rcontainer() {
  podman ps -a --filter "label=com.docker.compose.project=$RPROJECT" \
    --filter "label=com.docker.compose.service=$1" --format '{{.Names}}' | head -n 1
}
ra=$(rcontainer cometgate-a); rb=$(rcontainer cometgate-b); rr=$(rcontainer redis); rn=$(rcontainer node)
[[ -n "$ra" && -n "$rb" && -n "$rr" && -n "$rn" ]] || { podman ps -a; fail "the replicas' services did not start"; }
rlogs() { for c in "$ra" "$rb" "$rr"; do podman logs "$c" 2>&1 | tail -10; done; }
for port in $COMETGATE_A_METRICS_PORT $COMETGATE_B_METRICS_PORT; do
  up=""
  for _ in $(seq 150); do
    up=$(curl -fsS -m 2 "http://127.0.0.1:$port/metrics" 2>/dev/null | grep '^cometgate_shared_up ' || true)
    [[ "$up" == "cometgate_shared_up 1" ]] && break
    sleep 0.2
  done
  [[ "$up" == "cometgate_shared_up 1" ]] || { rlogs; fail "the replica on metrics port $port never reached Redis: '$up'"; }
done
log "both replicas reach the compose file's Redis"
shared=""
for height in 2 3 4 5 6 7 8 9; do
  curl -fsS -m 5 -o /dev/null "http://127.0.0.1:$COMETGATE_A_PORT/block?height=$height" || continue
  sleep 0.5
  shared=$(curl -sS -m 5 -D - -o /dev/null "http://127.0.0.1:$COMETGATE_B_PORT/block?height=$height" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "x-cometgate-cache" { print $2 }')
  [[ "$shared" == shared ]] && break
done
[[ "$shared" == shared ]] || { rlogs; fail "replica b never served replica a's answer from Redis (last: '$shared')"; }
log "replica b served replica a's answer from Redis"
since=$(date -u +%Y-%m-%dT%H:%M:%SZ)
rcompose down || fail "podman-compose down (replicas) failed"
codes=$(podman events --stream=false --since "$since" --filter event=died \
  --format '{{.Name}} {{.ContainerExitCode}}')
for c in "$ra" "$rb" "$rr" "$rn"; do
  code=$(awk -v c="$c" '$1 == c { print $2 }' <<<"$codes" | tail -n 1)
  [[ "$code" == 0 ]] || fail "$c: exit code '${code:-none seen}' on down (137 = killed); events: $codes"
done
podman image rm -f "${RPROJECT}_node" "${RPROJECT}_cometgate-a" "${RPROJECT}_cometgate-b" \
  "${RPROJECT}_redis" >/dev/null 2>&1 || true
log "docker smoke test OK"
