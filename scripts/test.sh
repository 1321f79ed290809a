#!/usr/bin/env bash
# The project's test command (README): sets up the oracle venv, then runs every test in the
# workspace. Algorithm-tier falsifiers run here and write evidence records; hardware-tier ones
# are ignored unless a GPU build runs them on the device (scripts/device-run.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PV_ORACLE_PYTHON="$(scripts/setup-oracles.sh | tail -n 1)"
export PV_ORACLE_PYTHON
# Evidence from local test runs goes to a git-ignored folder; committed evidence is added on purpose.
export PV_EVIDENCE_DIR="${PV_EVIDENCE_DIR:-$PWD/evidence/runs/local/test-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "$PV_EVIDENCE_DIR"
exec cargo test --workspace "$@"
