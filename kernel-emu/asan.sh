#!/usr/bin/env bash
# The emulator's tests with the kernels under AddressSanitizer: any read or write past the end of
# a buffer the kernel was given is reported. Builds with PV_EMU_ASAN=1 into its own target dir,
# then runs each test binary with the ASan runtime preloaded (the Rust side is not instrumented,
# so the runtime must come first; cargo and rustc must not run with it). About 2 minutes on 2
# cores. Not part of CI: g++'s libasan is the only requirement, but the run is slow.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/emu-asan}"
ASAN_LIB=$(gcc -print-file-name=libasan.so)
[[ -e "$ASAN_LIB" ]] || { echo "asan: no libasan.so for this gcc" >&2; exit 2; }
mapfile -t bins < <(PV_EMU_ASAN=1 cargo test -p kernel-emu --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import sys, json
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] != ["lib"]:
        print(m["executable"])')
[[ ${#bins[@]} -gt 0 ]] || { echo "asan: no test binaries were built" >&2; exit 1; }
status=0
for b in "${bins[@]}"; do
    echo "asan: $b"
    LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 "$b" --test-threads=2 || status=1
done
exit $status
