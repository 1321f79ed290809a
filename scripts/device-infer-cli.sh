#!/usr/bin/env bash
# Runs ON the GPU device machine: `infer`'s four commands with --device cuda against the same
# commands on the CPU, on synthetic models written there (docs/infer-cli.md). Build here first:
#   cargo build --release --features cuda -p infer && mkdir -p .device-carry &&
#   strip -o .device-carry/infer "$CARGO_TARGET_DIR/release/infer"
# then call the device tool with carry [".device-carry"] and "bash scripts/device-infer-cli.sh".
# Writes $OUT/cli.log and $OUT/cli-summary.txt: per model the min cosine between CPU (f32
# activations) and GPU logits over every position, whether greedy generation agrees, and the
# exit status of trace, bench and tokenize.
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
INFER=.device-carry/infer
[[ -x "$INFER" ]] || { echo "missing $INFER (see the header)" >&2; exit 2; }
LOG="$OUT/cli.log"
SUM="$OUT/cli-summary.txt"
W=$(mktemp -d)
{ echo "== $(date -u +%FT%TZ) on $(hostname)"; nvidia-smi -L; } | tee "$LOG"
for preset in tiny small; do
    M="$W/$preset.gguf"
    "$INFER" synth --preset "$preset" --quant q4_k_m --seed 1 -o "$M" >>"$LOG" 2>&1
    TOKENS=$(seq -s, 1 100)
    "$INFER" logits "$M" --tokens "$TOKENS" --act f32 --out "$W/cpu.json" >>"$LOG" 2>&1
    "$INFER" logits "$M" --tokens "$TOKENS" --device cuda --out "$W/gpu.json" >>"$LOG" 2>&1
    echo "$preset logits rc=$?" | tee -a "$SUM"
    python3 - "$W/cpu.json" "$W/gpu.json" <<'PY' | tee -a "$SUM"
import json, math, sys
a = json.load(open(sys.argv[1])); b = json.load(open(sys.argv[2]))
assert a["vocab"] == b["vocab"] and len(a["logits"]) == len(b["logits"]), "shapes differ"
def cos(x, y):
    d = sum(p * q for p, q in zip(x, y)); n = math.sqrt(sum(p * p for p in x) * sum(q * q for q in y))
    return d / n if n else float("nan")
cs = [cos(x, y) for x, y in zip(a["logits"], b["logits"])]
am = sum(1 for x, y in zip(a["logits"], b["logits"]) if x.index(max(x)) != y.index(max(y)))
print(f"  positions {len(cs)}, min cosine cpu(f32) vs cuda {min(cs):.9f}, argmax differs at {am}")
PY
    "$INFER" run "$M" --prompt "the model and the expert" --max-tokens 32 --act f32 >"$W/cpu.txt" 2>>"$LOG"
    "$INFER" run "$M" --prompt "the model and the expert" --max-tokens 32 --device cuda >"$W/gpu.txt" 2>>"$LOG"
    echo "  run rc=$?; greedy text equal: $(cmp -s "$W/cpu.txt" "$W/gpu.txt" && echo yes || echo no)" | tee -a "$SUM"
    { echo "  cpu: $(head -c 200 "$W/cpu.txt")"; echo "  gpu: $(head -c 200 "$W/gpu.txt")"; } >>"$SUM"
    "$INFER" trace "$M" --tokens 1,2,3,4 --save-tensor logits --out "$W/trace-$preset" --device cuda >>"$LOG" 2>&1
    echo "  trace rc=$?" | tee -a "$SUM"
    "$INFER" bench "$M" --device cuda --prompt-tokens 64 --gen-tokens 16 >>"$LOG" 2>&1
    echo "  bench rc=$?" | tee -a "$SUM"
    "$INFER" tokenize "$M" --text "hello world" --ids >>"$SUM" 2>>"$LOG"
    rm -f "$M"
done
rm -rf "$W"
