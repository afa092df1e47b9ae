# Sourced by the scripts: one build configuration for dev and CI, so a fresh clone reuses the
# shared target dir instead of rebuilding the world. Do not add RUSTFLAGS here or elsewhere:
# mixed flags double the target dir.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/agola-target}"
export AGOLA_TOOLS_DIR="${AGOLA_TOOLS_DIR:-$HOME/.cache/agola-tools}"
export PATH="$HOME/.cargo/bin:$PATH"
