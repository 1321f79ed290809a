#!/usr/bin/env bash
# CPU decode/prefill benchmark: our `infer bench` and llama.cpp (llama-cpp-python) on the same
# GGUF file, the same thread count and the same prompt/generation lengths, run alternately
# (ours, llama, ours, llama, ...) so that background load hits both alike.
#
#   scripts/bench-cpu.sh [MODEL.gguf] [--threads 2] [--prompt 128] [--gen 32] [--runs 3] [--json]
#   (env: PV_ORACLE_PYTHON = python with llama_cpp; INFER = prebuilt infer binary)
#
# Without MODEL it writes the `small` synthetic preset (the perf-anchors cpu-small shape) to
# $TMPDIR/pv-bench-small.gguf. Prints one line per run and the medians; --json prints JSON.
# Fairness: scripts/setup-oracles.sh builds llama.cpp for x86-64-v3 (no AVX-512, no AMX; see
# there why), which on an AVX-512 machine is slower than llama.cpp built for that CPU. For a
# speed comparison, point PV_ORACLE_PYTHON at a llama_cpp built with GGML_NATIVE=ON on a machine
# where that build runs (the 2026-11-22 figures used the device host's CPU).
set -euo pipefail

here="$(cd "$(dirname "$0")/.." && pwd)"
model=""
threads=2
prompt=128
gen=32
runs=3
json=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --threads) threads="$2"; shift 2 ;;
    --prompt) prompt="$2"; shift 2 ;;
    --gen) gen="$2"; shift 2 ;;
    --runs) runs="$2"; shift 2 ;;
    --json) json=1; shift ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) model="$1"; shift ;;
  esac
done

py="${PV_ORACLE_PYTHON:-/root/.cache/pv-oracle-venv/bin/python}"
# $INFER names a prebuilt binary (machines without cargo); otherwise build it.
if [[ -n "${INFER:-}" ]]; then
  infer="$INFER"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$here/target-engine}"
  cargo build --release -q -p infer --manifest-path "$here/Cargo.toml"
  infer="$CARGO_TARGET_DIR/release/infer"
fi

if [[ -z "$model" ]]; then
  model="${TMPDIR:-/tmp}/pv-bench-small.gguf"
  [[ -f "$model" ]] || "$infer" synth --preset small --quant q4_k_m --seed 1 -o "$model"
fi

llama_bench() {
  "$py" - "$model" "$threads" "$prompt" "$gen" <<'PY'
import json, sys, time, random
from llama_cpp import Llama
model, threads, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=n_prompt + n_gen + 8, n_batch=512, n_threads=threads,
            n_threads_batch=threads, verbose=False, seed=1)
rng = random.Random(1)
toks = [rng.randrange(llm.n_vocab()) for _ in range(n_prompt)]
t0 = time.perf_counter(); llm.eval(toks); t1 = time.perf_counter()
lat = []
nxt = 0
for _ in range(n_gen):
    s = time.perf_counter(); llm.eval([nxt]); lat.append(time.perf_counter() - s)
    nxt = int(llm.scores[llm.n_tokens - 1].argmax())
print(json.dumps({"prefill_tok_s": n_prompt / (t1 - t0), "decode_tok_s": n_gen / sum(lat)}))
PY
}

ours=(); theirs=(); ours_pp=(); theirs_pp=()
for i in $(seq 1 "$runs"); do
  o=$("$infer" bench "$model" --threads "$threads" --prompt-tokens "$prompt" --gen-tokens "$gen" --json 2>/dev/null)
  l=$(llama_bench)
  od=$(echo "$o" | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["decode_tok_s"], d["prefill_tok_s"])')
  ld=$(echo "$l" | "$py" -c 'import json,sys; d=json.load(sys.stdin); print(d["decode_tok_s"], d["prefill_tok_s"])')
  ours+=("${od% *}"); ours_pp+=("${od#* }"); theirs+=("${ld% *}"); theirs_pp+=("${ld#* }")
  [[ $json == 1 ]] || printf 'run %d: ours decode %.1f prefill %.1f tok/s | llama.cpp decode %.1f prefill %.1f tok/s\n' \
    "$i" "${od% *}" "${od#* }" "${ld% *}" "${ld#* }"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
mo=$(median "${ours[@]}"); ml=$(median "${theirs[@]}")
mop=$(median "${ours_pp[@]}"); mlp=$(median "${theirs_pp[@]}")
ratio=$(awk -v a="$mo" -v b="$ml" 'BEGIN {printf "%.3f", a / b}')
load=$(cut -d' ' -f1-3 /proc/loadavg)
if [[ $json == 1 ]]; then
  printf '{"model": "%s", "threads": %s, "prompt_tokens": %s, "gen_tokens": %s, "runs": %s, "ours_decode_tok_s": %s, "llama_decode_tok_s": %s, "ours_prefill_tok_s": %s, "llama_prefill_tok_s": %s, "decode_speed_ratio_vs_llama": %s, "loadavg": "%s"}\n' \
    "$model" "$threads" "$prompt" "$gen" "$runs" "$mo" "$ml" "$mop" "$mlp" "$ratio" "$load"
else
  printf 'median of %d: ours decode %.1f tok/s, llama.cpp decode %.1f tok/s, ratio %s; prefill ours %.1f, llama.cpp %.1f tok/s (load avg %s, %s)\n' \
    "$runs" "$mo" "$ml" "$ratio" "$mop" "$mlp" "$load" "$(nproc) cores"
fi
