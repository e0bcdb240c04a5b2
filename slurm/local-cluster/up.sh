#!/usr/bin/env bash
# Start a real one-node SLURM cluster on this machine (Debian/Ubuntu, root, no systemd needed): munge,
# optionally MariaDB + slurmdbd (accounting, which submitit needs), slurmctld and slurmd, all on loopback.
# The tests (tests/test_slurm.py) start it with this script and stop it with down.sh; it is also a quick way
# to try slurm/array.sbatch and `hydra/launcher=slurm` on a laptop or CI machine.
#
#   bash slurm/local-cluster/up.sh                      # install what is missing, start, wait for `idle`
#   SLURM_ACCOUNTING=0 bash slurm/local-cluster/up.sh   # no MariaDB/slurmdbd (sacct off; submitit may hang)
#   sinfo; sbatch --wrap hostname; ...; bash slurm/local-cluster/down.sh
#
# It needs root: as root it runs as it is; otherwise it runs itself again through sudo (asking for a password
# if sudo does), so the same command works on a root-only machine without sudo and on a sudo-user's laptop.
#
# Safe to run twice: a running cluster is reused as it is. When slurmctld is not running, the cluster starts
# fresh (job state and its accounting database wiped, job ids start again at 1). It never touches a
# slurm.conf it did not write (a real cluster's node), and stops only daemons it started (see down.sh).
# Exit status: 0 up; 3 cannot install or run the packages here (not root, apt failed); 4 this machine has a
# SLURM configuration of its own; 1 anything else (the daemons' logs are in /var/log/slurm/).
# Versions seen working: Debian 12, Slurm 22.05.8, munge 0.5.15, MariaDB 10.11.
set -euo pipefail

ACCOUNTING="${SLURM_ACCOUNTING:-1}"
MARK="# written by dpiat-bench slurm/local-cluster/up.sh"
STATE=/run/dpiat-local-slurm          # which daemons this script started (down.sh stops only those)
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
DB=dpiat_slurm_acct                   # own database and user: never touch another slurm's accounting data
DB_USER=dpiat_slurm
LOG=/var/log/slurm

say() { echo "up.sh: $*"; }
die() { local code=$1; shift; echo "up.sh: error: $*" >&2; exit "$code"; }

if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null 2>&1 \
    || die 3 "must run as root (it installs Debian packages and starts daemons), and there is no sudo here"
  exec sudo env SLURM_ACCOUNTING="$ACCOUNTING" bash "$0" "$@"
fi

installed() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
wait_for() {  # wait_for SECONDS WHAT CMD...: poll CMD every 0.2 s
  local limit=$1 what=$2; shift 2
  local end=$(( $(date +%s) + limit ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die 1 "$what did not come up within ${limit} s (logs: $LOG/)"
    sleep 0.2
  done
}
node_ready() {  # the node answers and is not down/drained (a reused cluster may be busy: mix/alloc)
  local st; st=$(sinfo -h -N -o %t 2>/dev/null | head -n1) || return 1
  case "$st" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac
}

# --- a configuration we did not write means a real cluster: leave it alone -------------------------------
for f in "$CONF" "$DBD_CONF"; do
  if [ -e "$f" ] && ! head -n1 "$f" | grep -qxF "$MARK"; then
    die 4 "$f exists and was not written by this script (a real SLURM installation?); not touching it"
  fi
done

# --- already up? ----------------------------------------------------------------------------------------
if alive /run/slurmctld.pid && alive /run/slurmd.pid && node_ready; then
  say "cluster already running: $(sinfo -h -N -o '%N %t %c CPUs')"
  exit 0
fi

# --- 1. packages ----------------------------------------------------------------------------------------
PKGS=(slurmctld slurmd slurm-client munge)
[ "$ACCOUNTING" = 1 ] && PKGS+=(slurmdbd mariadb-server)
MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done
if [ "${#MISSING[@]}" -gt 0 ]; then
  say "installing ${MISSING[*]}"
  # The packages' postinst scripts would start the daemons (and fail: there is no slurm.conf yet). A
  # policy-rc.d that answers 101 tells invoke-rc.d not to; ours is removed again afterwards.
  OWN_POLICY=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; OWN_POLICY=1
  fi
  rc=0
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      -o DPkg::Lock::Timeout=300 "${MISSING[@]}"; } >"/tmp/dpiat-slurm-apt.log" 2>&1 || rc=$?
  [ "$OWN_POLICY" = 1 ] && rm -f /usr/sbin/policy-rc.d
  [ "$rc" = 0 ] || die 3 "apt-get install ${MISSING[*]} failed (exit $rc); see /tmp/dpiat-slurm-apt.log"
fi
mkdir -p "$STATE" "$LOG"

# --- 2. munge (the authentication every SLURM message carries) ------------------------------------------
if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  say "reusing the running munged"
else
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
  chown munge:munge /etc/munge /etc/munge/munge.key; chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key
  mkdir -p /run/munge /var/log/munge /var/lib/munge   # /run/munge is made by systemd elsewhere, not here
  chown munge:munge /run/munge /var/log/munge /var/lib/munge; chmod 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged --force
  touch "$STATE/munged"
  wait_for 20 munged sh -c 'munge -n | unmunge'
fi

# --- 3. slurm.conf ----------------------------------------------------------------------------------------
HOST=$(hostname -s)
# srun and Lightning resolve the node name in SLURM_JOB_NODELIST
getent hosts "$HOST" >/dev/null || echo "127.0.0.1 $HOST" >> /etc/hosts
# the machine's cores: nproc alone would honour OMP_NUM_THREADS / OMP_THREAD_LIMIT of whoever starts the cluster
# (a test worker pinned to one thread), and a node of 1 CPU leaves a 2-task job pending forever (PartitionConfig)
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
MEM_MB=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
if [ "$ACCOUNTING" = 1 ]; then
  ACCT="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
else
  ACCT="AccountingStorageType=accounting_storage/none"
fi
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd
chown slurm:slurm /var/spool/slurmctld "$LOG"
cat > "$CONF.tmp" <<EOF
$MARK
ClusterName=dpiat
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A requeued job may start again only after cred_expire seconds (default 120): 10 keeps requeue tests short.
AuthInfo=cred_expire=10
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroup plugins: works in containers without systemd (and enforces no memory limits).
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
$ACCT
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=5
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
MailProg=/bin/true
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.tmp" "$CONF"

# --- 4. accounting: MariaDB on its unix socket, then slurmdbd ----------------------------------------------
if [ "$ACCOUNTING" = 1 ]; then
  if mariadb-admin ping >/dev/null 2>&1; then
    say "reusing the running MariaDB"
  else
    mkdir -p /run/mysqld; chown mysql:mysql /run/mysqld
    [ -d /var/lib/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=/var/lib/mysql >"$LOG/mariadb-install.log" 2>&1
    # setsid and no inherited descriptors: the caller (a test runner) must not wait on this daemon's pipes
    setsid /usr/sbin/mariadbd --user=mysql --skip-networking --pid-file=/run/mysqld/mysqld.pid \
      --socket=/run/mysqld/mysqld.sock >"$LOG/mariadb.log" 2>&1 </dev/null &
    touch "$STATE/mariadbd"
    wait_for 60 MariaDB mariadb-admin ping
  fi
  # A fresh controller needs a fresh accounting database (gotcha: duplicate job ids), so restart slurmdbd too.
  if alive /run/slurmdbd.pid; then
    kill "$(cat /run/slurmdbd.pid)"; while alive /run/slurmdbd.pid; do sleep 0.1; done
  fi
  mariadb -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB;
    CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_USER';
    GRANT ALL ON $DB.* TO '$DB_USER'@'localhost'; FLUSH PRIVILEGES;"
  cat > "$DBD_CONF.tmp" <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=slurm
PidFile=/run/slurmdbd.pid
LogFile=$LOG/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=$DB_USER
StoragePass=$DB_USER
StorageLoc=$DB
EOF
  chown slurm:slurm "$DBD_CONF.tmp"; chmod 0600 "$DBD_CONF.tmp"   # slurmdbd insists on both
  mv "$DBD_CONF.tmp" "$DBD_CONF"
  rm -f /run/slurmdbd.pid
  /usr/sbin/slurmdbd
  touch "$STATE/slurmdbd"
  wait_for 30 slurmdbd sacctmgr -n list cluster
  sacctmgr -i add cluster dpiat >/dev/null
fi

# --- 5. controller and node, from a fresh state -------------------------------------------------------------
for d in slurmd slurmctld; do  # one of the two may still run from a half-finished earlier start
  if alive "/run/$d.pid"; then kill "$(cat "/run/$d.pid")"; while alive "/run/$d.pid"; do sleep 0.1; done; fi
  rm -f "/run/$d.pid"
done
# Recovered job state next to a wiped accounting database would give duplicate job ids: wipe both.
rm -rf /var/spool/slurmctld/* /var/spool/slurmd/*
/usr/sbin/slurmctld
touch "$STATE/slurmctld"
/usr/sbin/slurmd
touch "$STATE/slurmd"
wait_for 60 "the node (sinfo idle)" node_ready
say "cluster up: $(sinfo -h -N -o '%N %t %c CPUs'), accounting $([ "$ACCOUNTING" = 1 ] && echo on || echo off)"
