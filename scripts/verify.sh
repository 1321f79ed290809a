#!/usr/bin/env bash
# The project's main job (README): sets up the oracle venv (gguf-py, llama.cpp), then
# `pv verify`: validate the contracts, run the falsifier suite into a fresh evidence run
# directory, and print the stage dashboard derived from contracts + evidence.
# Extra arguments go to `pv verify` (e.g. --include-ignored --features cuda on a GPU machine).
set -euo pipefail
cd "$(dirname "$0")/.."
PV_ORACLE_PYTHON="$(scripts/setup-oracles.sh | tail -n 1)"
export PV_ORACLE_PYTHON
exec cargo run --release -q -p pv -- verify "$@"
