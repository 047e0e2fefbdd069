#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, lint, type-check, then every test.
# As root it installs the Docker engine packages the test bed needs (Debian's docker.io,
# busybox-static); the tests start and stop their own private engines.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ "$(id -u)" -eq 0 ]; then
  sh scripts/provision.sh
else
  sh scripts/provision.sh || echo "test.sh: not root: the engine test bed may be unavailable" >&2
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'

"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy

# Two workers: each starts its own private engines; the pre-flight items stay on one worker.
"$PY" -m pytest -p no:cacheprovider -n 2 -q "$@"
