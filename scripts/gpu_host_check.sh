#!/bin/bash
# Acceptance check of the measurement tier on a real NVIDIA GPU host (Docker not needed).
# GPU 0 must be idle: the measurement tier passes; then, with a process holding a CUDA context
# on it, gpu-idle fails naming that process, in `llem preflight` (text and JSON) and in
# `pytest --llem-preflight` (JUnit). Needs pytest-llem installed for PYTHON (default python3).
# Usage: scripts/gpu_host_check.sh [OUTDIR]   (exit 0 when every expectation holds)
set -u
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-$(mktemp -d)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$out" || exit 1  # the installed llem, not a checkout's package beside this script
py=${PYTHON:-python3}
failures=0

expect() { # what, wanted exit status, actual exit status
    if [ "$2" = "$3" ]; then
        echo "ok   $1"
    else
        echo "FAIL $1 (exit status $3, wanted $2)"
        failures=$((failures + 1))
    fi
}

"$py" -m pytest_llem preflight --measurement-only --json "$out/idle.json" >"$out/idle.txt" 2>&1
expect "idle GPU: the measurement tier passes (llem preflight --measurement-only)" 0 $?

"$py" "$here/cuda_context.py" 120 >"$out/context.txt" 2>&1 &
holder=$!
trap 'kill $holder 2>/dev/null' EXIT
for _ in $(seq 150); do grep -q ready "$out/context.txt" && break; sleep 0.1; done
if ! grep -q ready "$out/context.txt"; then
    echo "FAIL no CUDA context on GPU 0: $(cat "$out/context.txt")"
    exit 1
fi

"$py" -m pytest_llem preflight --measurement-only --json "$out/busy.json" >"$out/busy.txt" 2>&1
expect "busy GPU: llem preflight fails" 1 $?
grep -q "PID $holder " "$out/busy.txt"
expect "busy GPU: the report names PID $holder" 0 $?
"$py" - "$out/busy.json" "$holder" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
[failure] = [f for f in report["failures"] if f["id"] == "gpu-idle"]
assert failure["cause"] == "gpu_busy", failure
assert int(sys.argv[2]) in [p["pid"] for p in failure["details"]["processes"]], failure
assert failure["fix"] and failure["url"].startswith("https://"), failure
PY
expect "busy GPU: the JSON report has gpu_busy with the PID, a fix and a link" 0 $?

"$py" -m pytest --llem-preflight --llem-measurement-only -q -p no:cacheprovider \
    --junitxml=busy-junit.xml >pytest.txt 2>&1
expect "busy GPU: pytest --llem-preflight --llem-measurement-only fails" 1 $?
grep -q 'name="llem_cause" value="gpu_busy"' "$out/busy-junit.xml"
expect "busy GPU: the JUnit XML names gpu_busy" 0 $?

echo "outputs: $out"
[ "$failures" -eq 0 ]
