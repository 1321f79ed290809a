#!/usr/bin/env bash
# Creates (idempotently) the Python venv that holds the independent correctness oracles:
#   gguf (gguf-py's dequantizers, GGUFWriter) and llama-cpp-python (builds llama.cpp's CPU path).
# The first llama-cpp-python install compiles llama.cpp (about 8 minutes on a 2-core machine).
# Prints the venv's python path on the last line of stdout.
#
# llama.cpp is built for x86-64-v3 (AVX2, FMA, F16C), not for the build machine's own CPU
# (GGML_NATIVE=OFF). Why: on a VM whose Xeon advertises AMX, the native build's AMX matmul
# (ggml_backend_amx_mul_mat) segfaults at the first decode (seen 2026-12-02), and a native build
# also would not run on a machine with another CPU. The build flags are recorded in the venv
# (pv-llama-build.txt); a llama_cpp installed with other flags, or by an older version of this
# script, is rebuilt (without pip's wheel cache, which does not key on CMAKE_ARGS).
set -euo pipefail
venv="${PV_ORACLE_VENV:-$HOME/.cache/pv-oracle-venv}"
want_gguf="gguf==0.19.0"
want_llama="llama-cpp-python==0.3.36"
llama_cmake="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF"
build_id="$want_llama $llama_cmake"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup-oracles: creating $venv" >&2
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import gguf, numpy' 2>/dev/null; then
  echo "setup-oracles: installing numpy, $want_gguf" >&2
  "$py" -m pip install -q --disable-pip-version-check numpy "$want_gguf" >&2
fi
if ! "$py" -c 'import llama_cpp' 2>/dev/null || [ "$(cat "$venv/pv-llama-build.txt" 2>/dev/null)" != "$build_id" ]; then
  echo "setup-oracles: building $want_llama with $llama_cmake (about 8 minutes on 2 cores)" >&2
  CMAKE_ARGS="$llama_cmake" "$py" -m pip install -q --disable-pip-version-check \
    --no-cache-dir --force-reinstall --no-deps "$want_llama" >&2
  # its Python dependencies (numpy, typing-extensions, diskcache, jinja2), without a rebuild
  "$py" -m pip install -q --disable-pip-version-check "$want_llama" >&2
  echo "$build_id" >"$venv/pv-llama-build.txt"
fi
"$py" -c 'import gguf, llama_cpp, numpy' >&2
echo "$py"
