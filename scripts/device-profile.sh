#!/usr/bin/env bash
# Runs ON the GPU device machine: Nsight Compute (ncu) on chosen kernels of `infer bench --device
# cuda` with the synthetic Qwen3-30B-A3B Q4_K_M file, to find out why a kernel is slow (achieved
# DRAM bandwidth, occupancy, warp stall reasons) rather than guessing. Needs .device-carry/infer
# (scripts/device-run.sh --prepare). Output under $OUT/profile/: one text report per filter.
#
#   PV_PROFILE="name:regex:skip:count ..."   which launches to profile (default below: the first
#                                            two layers of a prefill, then two layers of decode)
#   PV_PROFILE_SET=detailed|full             ncu section set (default: the sections listed here)
#   PV_PROFILE_KEEP=1                        keep /tmp/q30.gguf for a later run in the same call
#   PV_PROFILE_TIMEOUT=S                     seconds per ncu run (default 240)
# Clocks are left alone (--clock-control none), as the device's METHOD.md asks.
set -uo pipefail
: "${OUT:?OUT must be set (the device tool sets it)}"
INFER=.device-carry/infer
[[ -x "$INFER" ]] || { echo "missing $INFER: run scripts/device-run.sh --prepare here first" >&2; exit 2; }
mkdir -p "$OUT/profile"
GGUF=/tmp/q30.gguf
[[ -f "$GGUF" ]] || "$INFER" synth --preset qwen3-30b-a3b --quant q4_k_m --seed 1 -o "$GGUF" 2>&1 | tail -1
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[[ -n "$NCU" ]] || { echo "no ncu on this machine" >&2; exit 3; }
DEFAULT="prefill:matmat_tc|attn_partial:0:18 decode:^(moe_gate_up|matvec3|router_decode|moe_down_decode|matvec_q4_k):60:12 dattn:^(attn_partial|attn_combine|qk_norm_rope_store)$:150:6"
SECTIONS=(--section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy
    --section LaunchStats --section WarpStateStats --section SchedulerStats --section ComputeWorkloadAnalysis)
[[ -n "${PV_PROFILE_SET:-}" ]] && SECTIONS=(--set "$PV_PROFILE_SET")
for spec in ${PV_PROFILE:-$DEFAULT}; do
    IFS=: read -r name regex skip count <<<"$spec"
    t0=$SECONDS
    timeout "${PV_PROFILE_TIMEOUT:-240}" "$NCU" --clock-control none --kernel-name-base function -k "regex:$regex" \
        --launch-skip "$skip" --launch-count "$count" "${SECTIONS[@]}" --print-units base \
        "$INFER" bench "$GGUF" --device cuda --prompt-tokens 512 --gen-tokens 16 \
        >"$OUT/profile/$name.txt" 2>"$OUT/profile/$name.err"
    echo "== ncu $name rc=$? in $((SECONDS - t0)) s"
done
[[ "${PV_PROFILE_KEEP:-0}" == 1 ]] || rm -f "$GGUF"
