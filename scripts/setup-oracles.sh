#!/usr/bin/env bash
# Creates (idempotently) the Python venv that holds the independent correctness oracles:
#   gguf (gguf-py's dequantizers, GGUFWriter) and llama-cpp-python (builds llama.cpp's CPU path).
# The first llama-cpp-python install compiles llama.cpp (about 8 minutes on a 2-core machine);
# pip caches the built wheel, so later runs take seconds.
# Prints the venv's python path on the last line of stdout.
set -euo pipefail
venv="${PV_ORACLE_VENV:-$HOME/.cache/pv-oracle-venv}"
want_gguf="gguf==0.19.0"
want_llama="llama-cpp-python==0.3.36"
if [ ! -x "$venv/bin/python" ]; then
  echo "setup-oracles: creating $venv" >&2
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import gguf, llama_cpp, numpy' 2>/dev/null; then
  echo "setup-oracles: installing numpy, $want_gguf, $want_llama (first time compiles llama.cpp)" >&2
  "$py" -m pip install -q --disable-pip-version-check numpy "$want_gguf" >&2
  "$py" -m pip install -q --disable-pip-version-check "$want_llama" >&2
fi
"$py" -c 'import gguf, llama_cpp, numpy' >&2
echo "$py"
