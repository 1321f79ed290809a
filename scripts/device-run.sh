#!/usr/bin/env bash
# Runs ON the GPU device machine (no cargo there): executes the prebuilt GPU falsifier test binary
# carried in .device-carry/, builds and runs llama.cpp's llama-bench on the same GGUF file
# (scripts/device-llama.sh), and collects evidence records, bench JSON and logs under $OUT.
# Build here first (docs/gpu.md, "Running on the device"):
#   scripts/device-run.sh --prepare      (on the development machine: build, strip, copy the
#                                         falsifier test binary and `infer`)
#   scripts/device-llama.sh --prepare    (once: llama.cpp's source into .llama-src/)
# then call the device tool with carry [".device-carry", ".llama-src"] and command
# "bash scripts/device-run.sh". Order of work: the llama.cpp build (5-6 minutes on 16 cores, in
# the background) overlaps the parity falsifiers; every timed run (llama-bench, our benches)
# starts only once the build is done, so that nothing else competes for the machine.
# PV_PHASE=parity runs the parity and planted-bug falsifiers (and the llama.cpp build) only,
# PV_PHASE=bench only the timed runs, PV_PHASE=trace only the trace falsifiers (no llama.cpp, no
# 30B file); the default runs parity, bench and trace in one call.
set -uo pipefail

if [[ "${1:-}" == "--prepare" ]]; then
    set -e
    : "${CARGO_TARGET_DIR:?export CARGO_TARGET_DIR (e.g. /work/main/target-gpu)}"
    bin=$(cargo test --release --no-run --features cuda -p falsifiers --test gpu_forward 2>&1 \
        | sed -n 's/.*Executable tests\/gpu_forward.rs (\(.*\))/\1/p' | tail -1)
    [[ -x "$bin" ]] || { echo "no test binary found" >&2; exit 1; }
    mkdir -p .device-carry
    strip -o .device-carry/gpu_forward "$bin"
    # the trace falsifiers' CPU-vs-GPU bisection (trace-moe-sub-stages-v1, M-TRACE-2.1)
    tbin=$(cargo test --release --no-run --features cuda -p falsifiers --test trace_gpu 2>&1 \
        | sed -n 's/.*Executable tests\/trace_gpu.rs (\(.*\))/\1/p' | tail -1)
    [[ -x "$tbin" ]] || { echo "no trace_gpu test binary found" >&2; exit 1; }
    strip -o .device-carry/trace_gpu "$tbin"
    cargo build --release --features cuda -p infer
    strip -o .device-carry/infer "$CARGO_TARGET_DIR/release/infer"
    # The falsifier runtime finds pv.toml above the workspace the binary was built in (its
    # scopes, the `cuda` device) and digests each falsifier's scope there; carry that
    # workspace's committed pv.toml and engine sources so the records' digest describes this
    # build (run --prepare in a clean checkout of the commit you want evidence for).
    git diff --quiet HEAD -- engine Cargo.toml pv.toml || echo "warning: engine/ or pv.toml has uncommitted changes: the evidence digest will not match HEAD" >&2
    rm -rf .device-carry/root && mkdir -p .device-carry/root
    git archive --format=tar HEAD Cargo.toml pv.toml engine | tar -x -C .device-carry/root
    pwd > .device-carry/built-root.txt
    # the commit the binaries were built from, for the evidence records (PV_GIT_COMMIT)
    git rev-parse HEAD > .device-carry/built-commit.txt
    if git diff --quiet HEAD -- && [[ -z "$(git status --porcelain --untracked-files=normal)" ]]; then
        echo 0 > .device-carry/built-dirty.txt
    else
        echo 1 > .device-carry/built-dirty.txt
    fi
    ls -la .device-carry
    exit 0
fi

: "${OUT:?OUT must be set (the device tool sets it)}"
BIN=.device-carry/gpu_forward
[[ -x "$BIN" ]] || { echo "missing $BIN: run scripts/device-run.sh --prepare here first" >&2; exit 2; }
mkdir -p "$OUT/evidence" "$OUT/planted" "$OUT/ab" "$OUT/bench"
LOG="$OUT/device-run.log"
# The falsifier runtime computes the source digest from the workspace it was built in; point that
# path at this copy of the tree so that the digest describes the sources that were carried.
BUILT_ROOT=$(cat .device-carry/built-root.txt 2>/dev/null || echo /work/gpu-wt)
SRC_ROOT=$PWD
[[ -d .device-carry/root ]] && SRC_ROOT=$PWD/.device-carry/root
if [[ ! -e "$BUILT_ROOT" ]]; then mkdir -p "$(dirname "$BUILT_ROOT")" && ln -s "$SRC_ROOT" "$BUILT_ROOT"; fi
# This copy's git state is not the build's: records name the commit the binaries were built from.
if [[ -f .device-carry/built-commit.txt ]]; then
    PV_GIT_COMMIT=$(cat .device-carry/built-commit.txt)
    PV_GIT_DIRTY=$(cat .device-carry/built-dirty.txt 2>/dev/null || echo 1)
    export PV_GIT_COMMIT PV_GIT_DIRTY
fi

{
    echo "== $(date -u +%FT%TZ) device-run on $(hostname)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem,temperature.gpu --format=csv
    nvcc --version 2>/dev/null | tail -2
} 2>&1 | tee "$LOG"

run() { # name, env..., then test filters
    local label=$1; shift
    echo "== $label: $*" | tee -a "$LOG"
    local t0=$SECONDS
    env "$@" --include-ignored --test-threads=1 --nocapture 2>&1 | tee -a "$LOG" | grep --line-buffered -E "^test |DEVICE:|panicked|FAIL"
    echo "== $label done in $((SECONDS - t0)) s" | tee -a "$LOG"
}

PHASE=${PV_PHASE:-all}
# llama.cpp, built in the background while the parity falsifiers run.
LLAMA_PID=
if [[ "${PV_SKIP_LLAMA:-0}" != 1 && "$PHASE" != trace ]]; then
    (scripts/device-llama.sh build >"$OUT/bench/llama-build.log" 2>&1; echo "rc=$?" >>"$OUT/bench/llama-build.log") &
    LLAMA_PID=$!
fi
GGUF=/tmp/q30.gguf
if [[ -x .device-carry/infer && "$PHASE" != parity && "$PHASE" != trace ]]; then
    t0=$SECONDS
    .device-carry/infer synth --preset qwen3-30b-a3b --quant q4_k_m --seed 1 -o "$GGUF" 2>&1 | tail -2 | tee -a "$LOG"
    echo "== infer synth qwen3-30b-a3b q4_k_m --seed 1 in $((SECONDS - t0)) s" | tee -a "$LOG"
fi

# Every test process writes a run manifest beside its records (docs/evidence.md); this names the
# device call they all belong to, and the command that started it.
export PV_INVOCATION="device-run-$(date -u +%Y%m%dT%H%M%SZ)"
export PV_RUN_COMMAND="scripts/device-run.sh $*"
E="PV_EVIDENCE_DIR=$OUT/evidence"
if [[ -x .device-carry/trace_gpu && ( "$PHASE" == all || "$PHASE" == trace ) ]]; then
    run trace $E .device-carry/trace_gpu
fi
if [[ "$PHASE" != bench && "$PHASE" != trace ]]; then
run describe   $E "$BIN" --exact gpu_describe_device
run errors     $E "$BIN" --exact gpu_clear_errors
run preload    $E "$BIN" --exact gpu_preload_per_tensor_qtypes
run finite     $E "$BIN" --exact gpu_logits_finite
run layer-tiny $E "$BIN" --exact gpu_layer_cosine_tiny
run logits     $E "$BIN" --exact gpu_logits_parity
run parity-30b $E "$BIN" gpu_router_topk_agreement gpu_layer_cosine_30b_shape

if [[ "${PV_SKIP_PLANTED:-0}" != 1 ]]; then
    # The same falsifiers with a planted wrong-qtype dispatch at layer 2 (Q6_K run as Q5_K): each
    # must now FAIL. Their records go to planted/, never to the real evidence.
    P="PV_EVIDENCE_DIR=$OUT/planted PV_GPU_PLANT=wrong-qtype:2"
    run planted-finite $P "$BIN" --exact gpu_logits_finite
    run planted-layer  $P "$BIN" --exact gpu_layer_cosine_tiny
    run planted-logits $P "$BIN" --exact gpu_logits_parity
    run planted-router $P "$BIN" gpu_router_topk_agreement gpu_layer_cosine_30b_shape
fi
fi

# Timed runs from here on, with nothing else running.
LB=
if [[ -n "$LLAMA_PID" ]]; then
    wait "$LLAMA_PID"
    tail -3 "$OUT/bench/llama-build.log" | tee -a "$LOG"
fi
if [[ -n "$LLAMA_PID" && "$PHASE" != parity ]]; then
    t0=$SECONDS
    if scripts/device-llama.sh bench "$GGUF" "$OUT/bench/llama-bench.json" 2>"$OUT/bench/llama-bench.err"; then
        LB="PV_LLAMA_BENCH_JSON=$OUT/bench/llama-bench.json"
    fi
    echo "== llama-bench done in $((SECONDS - t0)) s" | tee -a "$LOG"
fi
F="PV_GPU_BENCH_GGUF=$GGUF"
if [[ "$PHASE" != parity && "$PHASE" != trace ]]; then
run bench $E $LB $F PV_GPU_BENCH_JSON="$OUT/bench/bench-file.json" "$BIN" gpu_decode_vs_llama_cpp gpu_prefill_vs_llama_cpp gpu_vram_budget
# A/B: the same file bench with programmatic dependent launch (records kept apart).
run bench-pdl PV_EVIDENCE_DIR="$OUT/ab" $LB $F PV_GPU_PDL=1 PV_GPU_BENCH_JSON="$OUT/bench/bench-file-pdl.json" "$BIN" --exact gpu_decode_vs_llama_cpp
# A/B of the kernels adopted on 2026-12-02 (kernel-emu/README.md): all old paths, then each one
# alone, same file and call (PV_RUN_AB_STAGED=1; records kept apart in ab/).
# PV_AB="name VAR=v ...;name2 VAR=v" replaces the list (entries separated by ';').
if [[ "${PV_RUN_AB_STAGED:-0}" == 1 ]]; then
    AB_LIST=${PV_AB:-"old-all PV_GPU_NO_MQ=1 PV_GPU_NO_AP=1 PV_GPU_NO_RT=1 PV_GPU_DECODE_RPW=1;no-mq PV_GPU_NO_MQ=1;no-ap PV_GPU_NO_AP=1;no-rt PV_GPU_NO_RT=1;rpw1 PV_GPU_DECODE_RPW=1;fused-attn PV_GPU_FUSED_ATTN=1"}
    IFS=';' read -r -a AB_ENTRIES <<<"$AB_LIST"
    for ab in "${AB_ENTRIES[@]}"; do
        read -r name envs <<<"$ab"
        # shellcheck disable=SC2086 # envs is a list of VAR=value words
        run "bench-$name" PV_EVIDENCE_DIR="$OUT/ab" $LB $F $envs PV_GPU_BENCH_JSON="$OUT/bench/bench-file-$name.json" \
            "$BIN" gpu_decode_vs_llama_cpp gpu_prefill_vs_llama_cpp
    done
fi
if [[ "${PV_RUN_AB:-0}" == 1 ]]; then
    run bench-no-tc PV_EVIDENCE_DIR="$OUT/ab" $LB $F PV_GPU_NO_TC=1 PV_GPU_BENCH_JSON="$OUT/bench/bench-file-no-tc.json" "$BIN" --exact gpu_prefill_vs_llama_cpp
fi
# The CLI path: `infer bench --device cuda` on the same file (PV_RUN_CLI=1).
if [[ "${PV_RUN_CLI:-0}" == 1 && -x .device-carry/infer && -f "$GGUF" ]]; then
    t0=$SECONDS
    .device-carry/infer bench "$GGUF" --device cuda --prompt-tokens 512 --gen-tokens 128 --json \
        >"$OUT/bench/infer-bench-cuda.json" 2>>"$LOG"
    echo "== infer bench rc=$? in $((SECONDS - t0)) s" | tee -a "$LOG"
fi
fi
rm -f "$GGUF"

# The built llama-bench comes back in pieces (16 MB per file), so that a later call can carry it
# in .llama-src/ instead of building again: cat llama-bench.xz.* | xz -d > .llama-src/llama-bench
if [[ "${PV_FETCH_LLAMA:-0}" == 1 && -x .llama-build/bin/llama-bench ]]; then
    xz -T0 -c .llama-build/bin/llama-bench | split -b 15M -d - "$OUT/llama-bench.xz."
fi

tar -C "$OUT" -cf "$OUT/evidence.tar" evidence planted ab bench && rm -rf "$OUT/evidence" "$OUT/planted" "$OUT/ab" "$OUT/bench"
echo "== summary" | tee -a "$LOG"
grep -E "^test .*(ok|FAILED|ignored)$|done in|FALSIFY-.*(pass|fail|skip)" "$LOG" | tee "$OUT/summary.txt"
