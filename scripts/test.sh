#!/usr/bin/env bash
# The whole test suite, on a brand-new machine or a used one:
#   installs what is missing, starts etcd, the S3 server (s3s-fs) and dockerd on loopback
#   (reusing ones already running), imports a local busybox image, then runs buf lint,
#   cargo fmt --check, cargo clippy -D warnings and cargo nextest for the whole workspace.
# Everything it started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

bash scripts/install-deps.sh

STATE_DIR="$(mktemp -d /tmp/agola-test.XXXXXX)"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$STATE_DIR"
}
trap cleanup EXIT
. scripts/infra.sh

# --- checks --------------------------------------------------------------------------------
echo "test.sh: buf lint"
"$AGOLA_TOOLS_DIR/node_modules/.bin/buf" lint
# Breaking-change detection is wired but not enforced while the contracts are young: it
# reports changes against the previous commit without failing the run.
if git rev-parse -q --verify HEAD~1 >/dev/null 2>&1; then
  echo "test.sh: buf breaking (advisory) against HEAD~1"
  "$AGOLA_TOOLS_DIR/node_modules/.bin/buf" breaking --against '.git#ref=HEAD~1' || echo "test.sh: buf breaking reported changes (not enforced yet)"
fi
echo "test.sh: cargo fmt --check"
cargo fmt --all -- --check
echo "test.sh: cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "test.sh: cargo nextest"
cargo nextest run --workspace --locked --no-fail-fast
