"""A hostile experiment image: it does to the run directory what a root container can do.

`llem run` mounts RUN_DIR read-write at /run/llem, and an image's command runs there as root: it
can leave a symbolic link to a host path, a FIFO or a directory under any name llem will use
(its own `<id>_config.json` and `<id>.log`, or the result it will read back).
"""

from __future__ import annotations

from .engine import Engine

HOSTILE_PATH = "/usr/local/bin/llem-hostile"
# llem-hostile ACTION...: each action in turn, in /run/llem; exit 0 unless told otherwise.
#   link NAME TARGET   a symbolic link NAME -> TARGET (a host path, which llem would follow)
#   fifo NAME          a FIFO named NAME
#   dir NAME           a directory named NAME
#   big NAME BYTES     a regular file of BYTES zero bytes
#   result             <id>_result.json as the contract asks ({"ok": true})
#   error JSON_TEXT    <id>_error.json with JSON_TEXT (JSON-escaped) as its message
#   say TEXT           TEXT on stdout, as is
#   sleep SECONDS
#   exit CODE
HOSTILE_SCRIPT = """#!/bin/sh
config=${LLEM_CONFIG_PATH:?LLEM_CONFIG_PATH is not set}
base=${config%_config.json}
cd /run/llem || exit 2
while [ $# -gt 0 ]; do
  case $1 in
    link) rm -rf "$2"; ln -s "$3" "$2"; shift 3 ;;
    fifo) rm -rf "$2"; busybox mkfifo "$2"; shift 2 ;;
    dir) rm -rf "$2"; mkdir "$2"; shift 2 ;;
    big) rm -rf "$2"; head -c "$3" /dev/zero > "$2"; shift 3 ;;
    result) printf '{"ok": true}\\n' > "${base}_result.json"; shift ;;
    error) printf '{"error": "%s"}\\n' "$2" > "${base}_error.json"; shift 2 ;;
    say) printf '%s\\n' "$2"; shift 2 ;;
    sleep) sleep "$2"; shift 2 ;;
    exit) exit "$2" ;;
    *) echo "llem-hostile: unknown action $1" >&2; exit 2 ;;
  esac
done
"""


def build_hostile_image(engine: Engine, ref: str) -> str:
    """A busybox image whose command is `llem-hostile` (give it actions as arguments)."""
    return engine.build_image(ref, cmd=[HOSTILE_PATH], files={HOSTILE_PATH: HOSTILE_SCRIPT})
