#!/bin/sh
# Installs what the test bed needs: dockerd, containerd and runc (Debian's docker.io), a static
# busybox (busybox-static), OpenSSH's server and client (openssh-server, openssh-client) for
# the fleet tests over ssh, an image registry (docker-registry, served on 127.0.0.1 by the
# tests), Slurm's controller, node daemon and clients (slurmctld, slurmd, slurm-client: the
# tests run a one-node Slurm on 127.0.0.1), Podman (podman, with conmon, containers-common and
# its network plugins as dependencies; run as root with `--network none`, so no uidmap or
# slirp4netns), and what the system python3 needs to make a virtual environment (python3-venv).
# Idempotent and quiet when all is present. It never starts a system service (Docker, sshd,
# the registry, Slurm, munge): the test bed starts private ones of its own.
set -eu

static_busybox() { # the image root filesystems need a busybox without a program interpreter
  dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed' && return 0
  bb=$(command -v busybox 2>/dev/null) || return 1
  command -v readelf >/dev/null 2>&1 && ! LC_ALL=C readelf -l "$bb" | grep -q 'program interpreter'
}

missing=""
for tool in dockerd containerd runc; do
  if ! PATH="/usr/local/sbin:/usr/sbin:/sbin:$PATH" command -v "$tool" >/dev/null 2>&1; then
    missing=" docker.io"
  fi
done
[ -x /usr/bin/docker ] || missing=" docker.io"
static_busybox || missing="$missing busybox-static"
PATH="/usr/sbin:/sbin:$PATH" command -v sshd >/dev/null 2>&1 || missing="$missing openssh-server"
for tool in ssh ssh-keygen; do
  command -v "$tool" >/dev/null 2>&1 || missing="$missing openssh-client"
done
PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH" command -v docker-registry >/dev/null 2>&1 ||
  missing="$missing docker-registry"
for tool in slurmctld slurmd; do
  PATH="/usr/sbin:/sbin:$PATH" command -v "$tool" >/dev/null 2>&1 || missing="$missing $tool"
done
for tool in sbatch srun squeue scontrol scancel sinfo; do
  command -v "$tool" >/dev/null 2>&1 || { missing="$missing slurm-client"; break; }
done
[ -x /usr/bin/podman ] || missing="$missing podman"
# The system's python3 (the one the README's quick start uses), able to make a venv.
py=/usr/bin/python3
[ -x "$py" ] || missing="$missing python3"
"$py" -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$missing python3-venv"
[ -n "$missing" ] || exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "provision.sh: run as root to install:$missing" >&2
  exit 1
fi
echo "provision.sh: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
# Keep the packages' maintainer scripts from starting any service (Debian's policy-rc.d).
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
apt-get update -qq
# shellcheck disable=SC2086 # the package list is meant to split
apt-get install -y -qq --no-install-recommends $missing >/dev/null
echo "provision.sh: done"
