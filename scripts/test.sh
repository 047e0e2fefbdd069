#!/usr/bin/env bash
# The whole test suite on a fresh machine: install, lint, type-check, then every test.
# As root it installs what the test bed needs (scripts/provision.sh: Debian's docker.io,
# busybox-static, docker-registry, podman, python3-venv); the tests start and stop their own
# private engines, Podman storage and registry. Python packages go into the virtual environment .venv of this checkout
# (made when absent), as in the README's quick start: a stock Debian or Ubuntu python3 is
# externally managed (PEP 668). An active virtual environment, or PYTHON=..., is used instead.
# Extra arguments go to pytest (e.g. `bash scripts/test.sh tests/unit`).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -eq 0 ]; then
  sh scripts/provision.sh
else
  sh scripts/provision.sh || echo "test.sh: not root: the engine test bed may be unavailable" >&2
fi
if [ -n "${PYTHON:-}" ]; then
  PY=$PYTHON
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  PY=$VIRTUAL_ENV/bin/python
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
fi
"$PY" -m pip install --quiet --disable-pip-version-check -e '.[dev]'
# As an activated environment would: its `python` and `llem` first on PATH (the tests run
# commands such as `python` by name; a stock Debian has no `python` of its own).
case $PY in
  */*) PATH="$(cd "$(dirname "$PY")" && pwd):$PATH" && export PATH ;;
esac

"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy

# Two workers: each starts its own private engines; the pre-flight items stay on one worker.
"$PY" -m pytest -p no:cacheprovider -n 2 -q "$@"
