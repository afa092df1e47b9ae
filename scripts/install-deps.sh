#!/usr/bin/env bash
# Installs what the build and the test suite need on a brand-new Debian machine.
# Idempotent: every step checks first and does nothing when the tool is already there.
set -euo pipefail

need_apt=()
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# well-known types (google/protobuf/timestamp.proto) live in libprotobuf-dev on Debian
[ -f /usr/include/google/protobuf/timestamp.proto ] || need_apt+=(libprotobuf-dev)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v dockerd >/dev/null 2>&1 || need_apt+=(docker.io)
[ -x /bin/busybox ] || need_apt+=(busybox-static)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)

if [ "${#need_apt[@]}" -gt 0 ]; then
  echo "install-deps: installing Debian packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

# s3s-fs: a real S3 server for the object storage tests. 0.14.1 is the newest that builds with our rustc.
if ! command -v s3s-fs >/dev/null 2>&1; then
  echo "install-deps: cargo install s3s-fs@0.14.1 (about 3 minutes)"
  cargo install s3s-fs@0.14.1 --features binary --locked
fi

# The static (musl) rust target, for the toolbox binary that the docker driver copies into
# task containers (images such as busybox have no glibc).
musl_target="$(uname -m)-unknown-linux-musl"
if ! rustup target list --installed 2>/dev/null | grep -qx "$musl_target"; then
  echo "install-deps: rustup target add $musl_target"
  rustup target add "$musl_target"
fi

# grpcio-tools: the Python client test generates Python stubs from proto/ (a client in
# another language talking to the gateway).
if ! python3 -c "import grpc_tools, grpc" >/dev/null 2>&1; then
  echo "install-deps: pip install grpcio-tools"
  python3 -m pip install --quiet --disable-pip-version-check grpcio-tools==1.66.1
fi

# buf: Protobuf linter, installed from npm into a tools dir outside the clone.
TOOLS_DIR="${AGOLA_TOOLS_DIR:-$HOME/.cache/agola-tools}"
if [ ! -x "$TOOLS_DIR/node_modules/.bin/buf" ]; then
  echo "install-deps: npm install @bufbuild/buf into $TOOLS_DIR"
  mkdir -p "$TOOLS_DIR"
  (cd "$TOOLS_DIR" && npm install --silent --no-audit --no-fund @bufbuild/buf@1.47.2)
fi
