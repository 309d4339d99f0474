#!/bin/sh
# The long soak: a constant mixed load for COMETGATE_SOAK_SECS (default 600 s) with a
# hot reload halfway; fails if RSS or open fds creep, errors grow or a request is lost.
set -eu
cd "$(dirname "$0")/.."
COMETGATE_SOAK_SECS="${COMETGATE_SOAK_SECS:-600}" \
COMETGATE_SOAK_RATE="${COMETGATE_SOAK_RATE:-200}" \
    exec cargo test --release -p cometgate --test soak -- --nocapture "$@"
