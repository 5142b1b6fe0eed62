#!/usr/bin/env bash
# A real single-node SLURM for the atlas's tests (tests/test_atlas.py): controller and node from Debian's packages,
# started here, as checked on these machines (../shared/SLURM_LOCAL.md). Run by .ci/run under CI=true, or by hand
# with POSENC_SLURM=1; never by `make test` on a user's machine. Prints the SLURM_CONF to export; on failure prints
# nothing and writes why in $SLURM_DIR/unavailable (the tests skip with that reason).
set -uo pipefail
SLURM_DIR=${SLURM_DIR:-/tmp/posenc-slurm}
mkdir -p "$SLURM_DIR/spool" "$SLURM_DIR/state"
fail() { echo "$1" > "$SLURM_DIR/unavailable"; echo "slurm: $1" >&2; exit 1; }
rm -f "$SLURM_DIR/unavailable"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  [ "$(id -u)" = 0 ] || fail "slurm-wlm and munge are not installed and this user is not root to install them"
  command -v apt-get >/dev/null || fail "no apt-get to install slurm-wlm and munge"
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge) >"$SLURM_DIR/apt.log" 2>&1 \
    || fail "apt-get install slurm-wlm munge failed (see $SLURM_DIR/apt.log)"
fi
host=$(hostname -s)
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -f /etc/munge/munge.key ] || (dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null && chmod 400 /etc/munge/munge.key)
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  runuser -u munge -- munged || fail "munged did not start"
fi
munge -n | unmunge >/dev/null 2>&1 || fail "munge does not authenticate (munge -n | unmunge)"
cat > "$SLURM_DIR/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmUser=root
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmdSpoolDir=$SLURM_DIR/spool
StateSaveLocation=$SLURM_DIR/state
SlurmctldLogFile=$SLURM_DIR/ctld.log
SlurmdLogFile=$SLURM_DIR/d.log
NodeName=$host CPUs=$(nproc) RealMemory=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 2048 )) State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$SLURM_DIR/slurm.conf"
for d in slurmctld slurmd; do
  pid="$SLURM_DIR/$d.pid"
  if [ -f "$pid" ] && kill -0 "$(cat "$pid")" 2>/dev/null; then kill "$(cat "$pid")"; sleep 1; fi
done
slurmctld || fail "slurmctld did not start (see $SLURM_DIR/ctld.log)"
slurmd || fail "slurmd did not start (see $SLURM_DIR/d.log)"
for _ in $(seq 30); do
  sinfo -h -o %T 2>/dev/null | grep -q idle && { echo "$SLURM_CONF"; exit 0; }
  sleep 1
done
fail "the node did not become idle in 30 s (sinfo: $(sinfo -h 2>&1 | head -1))"
