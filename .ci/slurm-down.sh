#!/bin/bash
# Stop the daemons .ci/slurm-up.sh started, each by its PID file (jobs cancelled first). Idempotent.
set -u
stop() {
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for i in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$1"
}
[ -s /run/slurm/slurmctld.pid ] && scancel --user=root 2>/dev/null || true
stop /run/slurm/slurmd.pid
stop /run/slurm/slurmctld.pid
stop /run/slurm/slurmdbd.pid
stop /run/mysqld/mysqld.pid
stop /run/munge/munged.pid
