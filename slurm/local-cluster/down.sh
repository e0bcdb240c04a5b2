#!/usr/bin/env bash
# Stop the one-node SLURM cluster that up.sh started: slurmd, slurmctld, slurmdbd, MariaDB, munged, in that
# order, each by its pid file (never by process name), and only the daemons up.sh itself started (a munged or
# MariaDB that was already running stays). Packages stay installed; queued jobs are lost.
#
#   bash slurm/local-cluster/down.sh          # as root, or through sudo, which it calls itself when not root
#
# Safe to run twice, or when nothing runs.
set -uo pipefail

STATE=/run/dpiat-local-slurm
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "down.sh: error: must run as root, and there is no sudo here" >&2; exit 3; }
  exec sudo bash "$0" "$@"
fi

stop() {  # stop NAME PIDFILE
  local name=$1 pf=$2 pid
  [ -e "$STATE/$name" ] || return 0
  if [ -s "$pf" ]; then
    pid=$(cat "$pf")
    if kill "$pid" 2>/dev/null; then
      for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$pid" 2>/dev/null; then echo "down.sh: $name ($pid) ignored SIGTERM for 30 s; killing it"; kill -9 "$pid"; fi
    fi
  fi
  rm -f "$STATE/$name"
  echo "down.sh: stopped $name"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop slurmdbd /run/slurmdbd.pid
stop mariadbd /run/mysqld/mysqld.pid
stop munged /run/munge/munged.pid
# slurmctld and slurmdbd run as the slurm user and cannot remove their pid files in /run; a stale
# /run/slurmctld.pid also makes the package's prerm fail on `apt-get remove`.
for pf in /run/slurmd.pid /run/slurmctld.pid /run/slurmdbd.pid; do
  if [ -e "$pf" ] && ! kill -0 "$(cat "$pf" 2>/dev/null)" 2>/dev/null; then rm -f "$pf"; fi
done
exit 0
