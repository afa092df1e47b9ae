#!/usr/bin/env bash
# The README's main job: builds agola and its toolbox, then runs the pipeline of an example
# repository with no server (`agola run`): every service in-process on embedded defaults.
# Tasks run in Docker containers when a Docker daemon answers (a local busybox image is
# imported first), else as local processes.
#
#   scripts/run.sh                         # examples/dag, approving its approval task
#   scripts/run.sh examples/hello          # another repository; extra args go to agola run
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v protoc >/dev/null 2>&1 && command -v busybox >/dev/null 2>&1 || bash scripts/install-deps.sh
cargo build --locked --bin agola
bash scripts/build-toolbox.sh "$CARGO_TARGET_DIR/toolbox" >/dev/null
if docker info >/dev/null 2>&1; then
  bash scripts/import-busybox.sh
fi
if [ $# -eq 0 ]; then
  set -- examples/dag --approve-all
fi
exec "$CARGO_TARGET_DIR/debug/agola" run "$@"
