#!/bin/sh
# Slurm HealthCheckProgram: check all of this node's GPUs with llem, now and then.
#
# slurm.conf (every node):
#   HealthCheckProgram=/etc/slurm/llem-healthcheck.sh
#   HealthCheckInterval=300
#
# Slurm kills a health check that runs longer than 60 seconds: llem is stopped after
# LLEM_TIMEOUT_S (default 45). On failure the node is drained with the reason
# "llem: [check-id] message". While jobs run here, their GPUs are busy by design, so gpu-idle is
# left out then. When a full check passes on a node that llem drained, the node is resumed
# (LLEM_RESUME=0 keeps it drained until an administrator resumes it).
#
# Settings (environment): LLEM, LLEM_DOCKER, LLEM_IMAGE, LLEM_SKIP_CHECKS and LLEM_TIMEOUT_S as
# for prolog.sh; LLEM_RESUME.
set -u
# slurmd starts it with SLURMD_NODENAME alone: a PATH for llem, nvidia-smi and Slurm's clients.
export PATH="${PATH:-/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin}"

llem=${LLEM:-llem}
limit=${LLEM_TIMEOUT_S:-45}
node=${SLURMD_NODENAME:-$(hostname -s)}
# Not a job's check: every GPU of the node.
unset SLURM_JOB_ID SLURM_JOB_GPUS SLURM_STEP_GPUS CUDA_VISIBLE_DEVICES

skips=${LLEM_SKIP_CHECKS:-}
full=1
jobs=$(squeue -h -w "$node" -t RUNNING,COMPLETING -o %i 2>/dev/null) || jobs=unknown
if [ -n "$jobs" ]; then # (unknown: slurmctld not reached; do not drain for a job's own use)
  skips=${skips:+$skips,}gpu-idle
  full=0
fi

set -- preflight --reason --timeout 20
if [ "${LLEM_DOCKER:-0}" = 1 ]; then
  [ -n "${LLEM_IMAGE:-}" ] && set -- "$@" --image "$LLEM_IMAGE"
else
  set -- "$@" --measurement-only
fi
[ -n "$skips" ] && set -- "$@" --skip-check "$skips"

# shellcheck disable=SC2086 # LLEM may be a command with arguments (e.g. "python3 -m pytest_llem")
reason=$(timeout -k 5 "$limit" $llem "$@" 2>/dev/null)
status=$?

if [ "$status" -eq 0 ]; then
  [ "$full" = 1 ] && [ "${LLEM_RESUME:-1}" = 1 ] || exit 0
  state=$(sinfo -h -N -n "$node" -o '%T|%E' 2>/dev/null | head -n 1)
  case $state in
    drain*"|llem: "*) scontrol update nodename="$node" state=resume >&2 ;;
  esac
  exit 0
fi

case $status in
  124 | 137) reason="llem: [preflight] the GPU check took longer than ${limit}s" ;;
  *) [ -n "$reason" ] || reason="llem: [preflight] llem could not check the GPUs (exit $status)" ;;
esac
reason=$(printf '%s\n' "$reason" | head -n 1)
echo "llem-healthcheck: draining $node: $reason" >&2
scontrol update nodename="$node" state=drain reason="$reason" >&2
exit 1
