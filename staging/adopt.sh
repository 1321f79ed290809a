#!/usr/bin/env bash
# Moves the staged kernels into the engine (staging/README.md, "Adopting"): applies
# staging/patches/0001-engine-adopt-staged-kernels.patch, then checks what can be checked without
# a GPU: the amended GPU contract (pv validate, pv diff --check), formatting, clippy with the
# cuda feature, the emulator's tests (which then also check the
# engine's shared-memory constants), and the NVRTC compile of the whole kernel source where an
# NVRTC library is found (LD_LIBRARY_PATH). It commits nothing: the commit, and the device run
# that must follow it, are yours.
set -euo pipefail
cd "$(dirname "$0")/.."
PATCH=staging/patches/0001-engine-adopt-staged-kernels.patch
if [[ -f engine/src/cuda/mmq.cu ]]; then
    echo "adopt: engine/src/cuda/mmq.cu exists already; nothing to do" >&2
    exit 0
fi
git apply --check "$PATCH" || {
    echo "adopt: $PATCH no longer applies to this tree; re-create it (staging/README.md)" >&2
    exit 1
}
git apply --index "$PATCH"
# the contract's precision statement is amended with the kernels (0.2.1, a text change)
cargo run -q -p pv -- validate
cargo run -q -p pv -- diff HEAD:contracts/qwen3-moe-forward-gpu-v1.yaml contracts/qwen3-moe-forward-gpu-v1.yaml --check
cargo run -q -p pv -- diff HEAD:contracts/gpu-kernels-emulated-v1.yaml contracts/gpu-kernels-emulated-v1.yaml --check
cargo fmt --all -- --check
cargo clippy --features cuda -p engine -p kernel-emu --all-targets -- -D warnings
cargo test -p kernel-emu
# the new kernels' own falsifiers (gpu-kernels-emulated-v1 0.1.1), on the CPU
cargo test -p falsifiers --test emulated
cargo test --features cuda -p engine --lib kernels_compile -- --nocapture
echo "adopt: applied and checked. Next: commit, then scripts/device-run.sh --prepare and a device"
echo "       run with PV_RUN_AB_STAGED=1 (docs/gpu.md, 'Running on the device')."
