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

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # what, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 10))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "test.sh: $what did not become ready in ${secs}s" >&2
  return 1
}

# --- etcd ----------------------------------------------------------------------------------
# Two instances: the shared one (each test uses its own key prefix) and one for the tests
# that compact, because compaction is store-wide and would break other tests' watches.
start_etcd() { # name port
  local name=$1 port=$2 peer=$(($2 + 10))
  if port_open "$port"; then
    echo "test.sh: reusing etcd on 127.0.0.1:$port"
    return
  fi
  etcd --data-dir "$STATE_DIR/etcd-$name" --name "$name" \
    --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
    --listen-peer-urls "http://127.0.0.1:$peer" --initial-advertise-peer-urls "http://127.0.0.1:$peer" \
    --initial-cluster "$name=http://127.0.0.1:$peer" \
    >"$STATE_DIR/etcd-$name.log" 2>&1 &
  pids+=($!)
  wait_for "etcd $name" 30 etcdctl --endpoints "127.0.0.1:$port" endpoint health || { cat "$STATE_DIR/etcd-$name.log"; exit 1; }
}
ETCD_PORT=${AGOLA_TEST_ETCD_PORT:-23790}
ETCD_COMPACT_PORT=${AGOLA_TEST_ETCD_COMPACT_PORT:-23795}
start_etcd agola-test "$ETCD_PORT"
start_etcd agola-test-compact "$ETCD_COMPACT_PORT"
export AGOLA_TEST_ETCD_ENDPOINTS="http://127.0.0.1:$ETCD_PORT"
export AGOLA_TEST_ETCD_COMPACT_ENDPOINTS="http://127.0.0.1:$ETCD_COMPACT_PORT"

# --- S3 (s3s-fs) ---------------------------------------------------------------------------
S3_PORT=${AGOLA_TEST_S3_PORT:-29000}
export AGOLA_TEST_S3_ACCESS_KEY=agolatest AGOLA_TEST_S3_SECRET_KEY=agolatestsecret
if port_open "$S3_PORT"; then
  echo "test.sh: reusing the S3 server on 127.0.0.1:$S3_PORT"
else
  mkdir -p "$STATE_DIR/s3"
  s3s-fs --host 127.0.0.1 --port "$S3_PORT" --access-key "$AGOLA_TEST_S3_ACCESS_KEY" \
    --secret-key "$AGOLA_TEST_S3_SECRET_KEY" "$STATE_DIR/s3" >"$STATE_DIR/s3.log" 2>&1 &
  pids+=($!)
  wait_for s3s-fs 30 port_open "$S3_PORT" || { cat "$STATE_DIR/s3.log"; exit 1; }
fi
export AGOLA_TEST_S3_ENDPOINT="http://127.0.0.1:$S3_PORT"

# --- dockerd -------------------------------------------------------------------------------
export AGOLA_TEST_DOCKER_SOCKET=/var/run/docker.sock
if docker info >/dev/null 2>&1; then
  echo "test.sh: reusing the running docker daemon"
else
  dockerd >"$STATE_DIR/dockerd.log" 2>&1 &
  pids+=($!)
  wait_for dockerd 60 docker info || { tail -50 "$STATE_DIR/dockerd.log"; exit 1; }
fi

# --- a local busybox image (no registry is reachable) -------------------------------------
export AGOLA_TEST_BUSYBOX_IMAGE=local/busybox:latest
if ! docker image inspect "$AGOLA_TEST_BUSYBOX_IMAGE" >/dev/null 2>&1; then
  rootfs="$STATE_DIR/busybox-rootfs"
  mkdir -p "$rootfs/bin" "$rootfs/tmp" "$rootfs/etc" "$rootfs/root"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $("$rootfs/bin/busybox" --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' >"$rootfs/etc/passwd"
  echo 'root:x:0:' >"$rootfs/etc/group"
  tar -C "$rootfs" -c . | docker import -c 'CMD ["/bin/sh"]' - "$AGOLA_TEST_BUSYBOX_IMAGE" >/dev/null
  docker tag "$AGOLA_TEST_BUSYBOX_IMAGE" busybox:stable
fi

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
