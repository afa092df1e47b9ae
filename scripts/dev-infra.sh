#!/usr/bin/env bash
# For development: starts the test infrastructure (etcd, s3s-fs, dockerd, local busybox image)
# and leaves it running, then prints the variables to export before running single tests:
#   eval "$(scripts/dev-infra.sh)"
#   cargo nextest run -p agola-executor
# Logs and data live in /tmp/agola-dev-infra. scripts/test.sh reuses what this started.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
STATE_DIR=/tmp/agola-dev-infra
mkdir -p "$STATE_DIR"
pids=()
. scripts/infra.sh >&2
env | grep '^AGOLA_TEST_' | sed 's/^/export /'
