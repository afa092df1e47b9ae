# Sourced by scripts/test.sh and scripts/dev-infra.sh: starts etcd (two instances), the S3
# server (s3s-fs) and dockerd on loopback, reusing ones already running, imports a local
# busybox image, and exports the AGOLA_TEST_* variables the tests read.
# The caller sets STATE_DIR (logs and data of what is started) and an array `pids` that
# receives the pids of the started processes.

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
bash scripts/import-busybox.sh

# --- the toolbox binary (static), used by the executor drivers in tests -------------------
bash scripts/build-toolbox.sh "$CARGO_TARGET_DIR/toolbox" >&2
export AGOLA_TEST_TOOLBOX_DIR="$CARGO_TARGET_DIR/toolbox"
