# Redis 7 as Debian ships it, for docker-compose.replicas.yml: the replicas share rate
# limits and answers through it. Built locally, so that the compose file needs no
# registry; any Redis 6.2+ image serves as well.
FROM debian:bookworm-slim
# Versions follow the bookworm point release the base image pins.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends redis-server \
 && rm -rf /var/lib/apt/lists/*
USER redis
EXPOSE 6379
STOPSIGNAL SIGTERM
# A cache, not a store: no persistence; bounded in bytes, least recently used out first.
ENTRYPOINT ["redis-server", "--bind", "0.0.0.0", "--protected-mode", "no", \
  "--save", "", "--appendonly", "no", \
  "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru"]
