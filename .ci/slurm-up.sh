#!/bin/bash
# Start a one-node Slurm cluster without systemd (munged, [mariadb+slurmdbd], slurmctld, slurmd)
# for the engine test (.ci/engine_test.sh). Run as root on Debian. Idempotent: what is already
# running is left alone. SLURM_ACCOUNTING=1 also starts mariadb+slurmdbd so that sacct works.
# The project's own copy of the shared recipe; .ci/slurm-down.sh stops what this starts.
set -euo pipefail
ACCT=${SLURM_ACCOUNTING:-0}
PKGS="slurmctld slurmd slurm-client munge"
[ "$ACCT" = 1 ] && PKGS="$PKGS slurmdbd mariadb-server"
need=0; for p in $PKGS; do dpkg -s "$p" >/dev/null 2>&1 || need=1; done
if [ $need = 1 ]; then  # a fresh image may have no package lists yet
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS \
    || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $PKGS; }
fi

NODE=$(hostname -s)
# node line as detected by slurmd (CPUs/Sockets/Cores/Threads), RealMemory lowered to 90%
NODELINE=$(slurmd -C | head -1 | awk '{for(i=1;i<=NF;i++){if($i~/^RealMemory=/){split($i,a,"=");$i="RealMemory=" int(a[2]*0.9)}} print}')
RUND=/run/slurm; LOGD=/var/log/slurm
mkdir -p /var/spool/slurmctld /var/spool/slurmd $LOGD $RUND /etc/slurm

if [ "$ACCT" = 1 ]; then
  ACCTCONF="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost"
else
  ACCTCONF="AccountingStorageType=accounting_storage/none"
fi
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=ci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${RUND}/slurmctld.pid
SlurmdPidFile=${RUND}/slurmd.pid
SlurmctldLogFile=${LOGD}/slurmctld.log
SlurmdLogFile=${LOGD}/slurmd.log
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
${ACCTCONF}
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
MinJobAge=300
${NODELINE} NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# --- munge
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
if ! munge -n >/dev/null 2>&1; then
  runuser -u munge -- /usr/sbin/munged
  for i in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
fi
munge -n | unmunge >/dev/null

# --- optional accounting: mariadb + slurmdbd
if [ "$ACCT" = 1 ]; then
  mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
  if ! mariadb-admin ping >/dev/null 2>&1; then
    nohup /usr/sbin/mariadbd --user=mysql --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock >/var/log/mariadbd.log 2>&1 &
    for i in $(seq 100); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 0.2; done
  fi
  mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
    CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmpw';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat > /etc/slurm/slurmdbd.conf <<CONF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=${RUND}/slurmdbd.pid
LogFile=${LOGD}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurmpw
StorageLoc=slurm_acct_db
CONF
  chmod 600 /etc/slurm/slurmdbd.conf
  alive $RUND/slurmdbd.pid || slurmdbd
  for i in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -n list cluster format=cluster | grep -qw ci || sacctmgr -i add cluster ci
fi

# --- slurm
alive $RUND/slurmctld.pid || slurmctld
alive $RUND/slurmd.pid    || slurmd
for i in $(seq 60); do
  [ "$(sinfo -h -n "$NODE" -o %t 2>/dev/null)" = idle ] && break; sleep 1
done
sinfo
[ "$(sinfo -h -n "$NODE" -o %t)" = idle ] || { tail -n 30 $LOGD/*.log; exit 1; }
