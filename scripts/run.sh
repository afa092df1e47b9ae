#!/usr/bin/env bash
# The README's main job: builds agola and serves every component in one process on embedded
# defaults (state under ./agola-data). Extra arguments go to `agola serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v protoc >/dev/null 2>&1 || bash scripts/install-deps.sh
cargo build --locked --bin agola
exec "$CARGO_TARGET_DIR/debug/agola" serve "$@"
