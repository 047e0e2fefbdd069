"""An image that does an experiment's work the way `llem run` dispatches it."""

from __future__ import annotations

from collections.abc import Mapping

from .engine import Engine

WORKLOAD_PATH = "/usr/local/bin/llem-workload"
# Reads $LLEM_CONFIG_PATH, writes <id>_result.json beside it; "fail-me" in the config makes it
# write <id>_error.json and exit 3, "sleep-me" makes it sleep 30 s first.
WORKLOAD_SCRIPT = """#!/bin/sh
config=${LLEM_CONFIG_PATH:?LLEM_CONFIG_PATH is not set}
base=${config%_config.json}
[ -r "$config" ] || { echo "llem-workload: cannot read $config" >&2; exit 2; }
if grep -q sleep-me "$config"; then sleep 30; fi
if grep -q fail-me "$config"; then
  printf '{"error": "fail-me requested", "config": %s}\\n' "$(cat "$config")" > "${base}_error.json"
  echo "llem-workload: failing as the config asks" >&2
  exit 3
fi
printf '{"energy_j": 12.5, "config": %s}\\n' "$(cat "$config")" > "${base}_result.json"
echo "llem-workload: done"
"""


def build_workload_image(engine: Engine, ref: str, env: Mapping[str, str] | None = None) -> str:
    """A busybox image whose command is the workload above; returns its id."""
    return engine.build_image(
        ref, env=env, cmd=[WORKLOAD_PATH], files={WORKLOAD_PATH: WORKLOAD_SCRIPT}
    )
