#!/bin/sh
# Slurm Prolog: before a job starts on this node, check the GPUs Slurm gave it with llem.
#
# slurm.conf (every node):
#   Prolog=/etc/slurm/prolog.d/llem-prolog.sh
#   PrologEpilogTimeout=120          # Slurm's own limit; this script stops llem well before
#   SchedulerParameters=nohold_on_prolog_fail   # a requeued job may start on another node
#
# On success it prints nothing and exits 0. On failure it drains the node with the reason
# "llem: [check-id] message" (what `sinfo -R` shows) and exits 1, so that Slurm requeues the job.
# The prolog runs as root with SLURM_JOB_GPUS set (host indices): llem judges those GPUs alone.
# A measurement-only check takes a second or two (llem stops nvidia-smi after 10 s); Slurm
# expects a prolog to end within MessageTimeout (10 s by default) and to call Slurm commands
# rarely: this one calls scontrol only to drain.
#
# Settings (environment; a site's wrapper script may set them, and PATH, before calling this):
#   LLEM            the llem command (default: llem on PATH)
#   LLEM_DOCKER=1   also run the Docker tiers (docker-cli ... gpu-in-container) for the job's
#                   GPUs; LLEM_IMAGE names the image probed (have it pulled on every node)
#   LLEM_SKIP_CHECKS  check ids not to run, comma-separated (e.g. persistence-mode)
#   LLEM_TIMEOUT_S  the limit of the whole check, in seconds (default 30)
set -u
# (slurmd gives a prolog PATH=/usr/local/bin:/usr/bin:/bin; a site's wrapper may set another.)
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"

llem=${LLEM:-llem}
limit=${LLEM_TIMEOUT_S:-30}
node=${SLURMD_NODENAME:-$(hostname -s)}

set -- preflight --reason --timeout 20
if [ "${LLEM_DOCKER:-0}" = 1 ]; then
  [ -n "${LLEM_IMAGE:-}" ] && set -- "$@" --image "$LLEM_IMAGE"
else
  set -- "$@" --measurement-only
fi
[ -n "${LLEM_SKIP_CHECKS:-}" ] && set -- "$@" --skip-check "$LLEM_SKIP_CHECKS"

# shellcheck disable=SC2086 # LLEM may be a command with arguments (e.g. "python3 -m pytest_llem")
reason=$(timeout -k 5 "$limit" $llem "$@" 2>/dev/null)
status=$?
[ "$status" -eq 0 ] && exit 0

case $status in
  124 | 137) reason="llem: [preflight] the GPU check took longer than ${limit}s" ;;
  *) [ -n "$reason" ] || reason="llem: [preflight] llem could not check the GPUs (exit $status)" ;;
esac
reason=$(printf '%s\n' "$reason" | head -n 1)
echo "llem-prolog: job ${SLURM_JOB_ID:-?}: draining $node: $reason" >&2
scontrol update nodename="$node" state=drain reason="$reason" >&2
exit 1
