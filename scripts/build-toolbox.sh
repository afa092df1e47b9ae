#!/usr/bin/env bash
# Builds the agola-toolbox binary that executors inject into task containers, named as the
# executor expects: <out dir>/agola-toolbox-linux-<arch> (arch = amd64, arm64, 386, arm).
#
#   scripts/build-toolbox.sh [OUT_DIR]      (default: $CARGO_TARGET_DIR/toolbox)
#
# A container image may have no glibc (busybox, alpine), so the binary should be static: when
# the host arch's musl target is installed (`rustup target list --installed`), it is built for
# it; otherwise the host's gnu target is built and the script says the result is dynamically
# linked. It never downloads a target; install one with
#   rustup target add x86_64-unknown-linux-musl
# (this worked on the project's machine when checked, through the rustup mirror it can reach;
# if it fails, only the dynamic fallback is available).
# Size settings (strip, LTO, one codegen unit, opt-level s, panic=abort) are passed as
# CARGO_PROFILE_RELEASE_* for this build only; an explicit --target keeps these artifacts apart
# from other release builds in the shared target dir.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

case "$(uname -m)" in
  x86_64) arch=amd64; musl=x86_64-unknown-linux-musl; gnu=x86_64-unknown-linux-gnu ;;
  aarch64 | arm64) arch=arm64; musl=aarch64-unknown-linux-musl; gnu=aarch64-unknown-linux-gnu ;;
  i386 | i686) arch=386; musl=i686-unknown-linux-musl; gnu=i686-unknown-linux-gnu ;;
  armv6l | armv7l) arch=arm; musl=armv7-unknown-linux-musleabihf; gnu=armv7-unknown-linux-gnueabihf ;;
  *) echo "build-toolbox.sh: unsupported machine $(uname -m)" >&2; exit 1 ;;
esac

if rustup target list --installed 2>/dev/null | grep -qx "$musl"; then
  target=$musl
  static=yes
else
  target=$gnu
  static=no
  echo "build-toolbox.sh: rust target $musl is not installed; building $gnu instead" >&2
  echo "build-toolbox.sh: the result is dynamically linked against glibc and will not run in" >&2
  echo "build-toolbox.sh: images without it (install the target: rustup target add $musl)" >&2
fi

export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_RELEASE_LTO=true
export CARGO_PROFILE_RELEASE_CODEGEN_UNITS=1
export CARGO_PROFILE_RELEASE_OPT_LEVEL=s
export CARGO_PROFILE_RELEASE_PANIC=abort

cargo build --release -p agola-toolbox --bin agola-toolbox --target "$target"

out_dir="${1:-$CARGO_TARGET_DIR/toolbox}"
mkdir -p "$out_dir"
out="$out_dir/agola-toolbox-linux-$arch"
cp "$CARGO_TARGET_DIR/$target/release/agola-toolbox" "$out.tmp"
mv "$out.tmp" "$out"
echo "build-toolbox.sh: $out ($target, static: $static, $(stat -c %s "$out") bytes)"
