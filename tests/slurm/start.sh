#!/usr/bin/env bash
# Starts a throw-away one-node SLURM (munged, slurmctld, slurmd) for tests, as root:
#
#   tests/slurm/start.sh STATE_DIR [N_GPUS]
#
# - Everything runs inside a network namespace that has only loopback (the daemons listen on all
#   addresses), named after STATE_DIR, so parallel test runs and any real SLURM on the machine are
#   not disturbed. Run SLURM commands (sbatch, squeue, snakemake --executor slurm) through
#   `STATE_DIR/exec CMD...`, which enters that namespace with SLURM_CONF set.
# - slurm.conf and gres.conf live in STATE_DIR/etc/; every process started through STATE_DIR/exec gets
#   its own mount namespace where that folder is bind-mounted over /etc/slurm, because the Snakemake
#   job-step plugin drops SLURM_CONF and its `srun` then reads /etc/slurm/slurm.conf. The machine's
#   /etc/slurm is untouched. (Not `ip netns exec`: it remounts /sys, hiding the cgroup mounts slurmd
#   needs.)
# - Loopback gets a second address, 127.0.0.2: glibc's getaddrinfo(AI_ADDRCONFIG) returns nothing
#   when 127.0.0.1 is the only IPv4 address, and slurmctld then cannot bind its port.
# - No accounting (no slurmdbd): job status comes from squeue, so finished jobs stay visible for
#   MinJobAge = 300 s. DefMemPerCPU is set, or a job without --mem takes the whole node.
# - N_GPUS (default 4) fake GPUs as GRES `gpu`; their File= entries are symlinks to /dev/null.
# - munged runs with its own key and socket in STATE_DIR.
# On any failure the script stops what it started (tests/slurm/stop.sh) and exits non-zero. It first
# stops clusters of killed test runs whose STATE_DIR has been deleted (stop.sh --stale).
# Writes STATE_DIR/env (SLURM_CONF=..., SLURM_NETNS=...), STATE_DIR/exec, logs in STATE_DIR/log/.
set -euo pipefail

STATE=${1:?usage: start.sh STATE_DIR [N_GPUS]}
NGPUS=${2:-4}
HERE=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
NS="wsss-slurm-$(printf '%s' "$STATE" | md5sum | cut -c1-10)"
ETC="$STATE/etc"
NODE=$(hostname -s)
CPUS=$(nproc)

for tool in ip munged slurmctld slurmd sinfo; do
    command -v "$tool" >/dev/null || { echo "start.sh: $tool not found" >&2; exit 2; }
done
[ "$(id -u)" = 0 ] || { echo "start.sh: must run as root" >&2; exit 2; }
[ -d /etc/slurm ] || mkdir -p /etc/slurm  # bind-mount target

"$HERE/stop.sh" --stale || true  # clusters of killed test runs whose STATE_DIR is gone

trap 'echo "start.sh: failed, stopping what was started; logs in $STATE/log" >&2; "$HERE/stop.sh" "$STATE" || true' ERR

rm -rf "$STATE/ctld" "$STATE/d" "$STATE/log" "$STATE/munge" "$STATE/dev" "$ETC"
mkdir -p "$STATE/ctld" "$STATE/d" "$STATE/log" "$STATE/munge" "$STATE/dev" "$ETC"
chmod 700 "$STATE/munge"
cat > "$STATE/env" <<EOF
SLURM_NETNS=$NS
SLURM_CONF=$ETC/slurm.conf
EOF
cat > "$STATE/exec" <<EOF
#!/bin/sh
# Runs a command inside the test cluster's network namespace, with SLURM_CONF set.
exec nsenter --net=/run/netns/$NS unshare --mount --propagation slave \\
    sh -c 'mount --bind "\$0" /etc/slurm && exec env SLURM_CONF="\$0/slurm.conf" "\$@"' "$ETC" "\$@"
EOF
chmod +x "$STATE/exec"

# network namespace with loopback only; registered so that `stop.sh --stale` finds it later
ip netns add "$NS"
mkdir -p /run/wsss-slurm
printf '%s\n' "$STATE" > "/run/wsss-slurm/$NS"
ip -n "$NS" link set lo up
ip -n "$NS" addr add 127.0.0.2/8 dev lo

# munge: private key and socket
dd if=/dev/urandom of="$STATE/munge/munge.key" bs=1024 count=1 status=none
chmod 400 "$STATE/munge/munge.key"
"$STATE/exec" munged --force --key-file="$STATE/munge/munge.key" \
    --socket="$STATE/munge/munge.socket" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/log/munged.log" --seed-file="$STATE/munge/munged.seed"

# fake GPUs
for ((i = 0; i < NGPUS; i++)); do ln -sf /dev/null "$STATE/dev/nvidia$i"; done
GRES_NODE=""
if [ "$NGPUS" -gt 0 ]; then
    GRES_NODE="Gres=gpu:$NGPUS"
    printf 'AutoDetect=off\nName=gpu File=%s/dev/nvidia[0-%d]\n' "$STATE" "$((NGPUS - 1))" > "$ETC/gres.conf"
else
    : > "$ETC/gres.conf"
fi

cat > "$ETC/slurm.conf" <<EOF
# test cluster written by tests/slurm/start.sh
ClusterName=wsss-test
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$STATE/munge/munge.socket
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
DefMemPerCPU=500
MinJobAge=300
ReturnToService=2
SlurmdParameters=config_overrides
SlurmdTimeout=300
InactiveLimit=0
KillWait=5
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=4000 $GRES_NODE State=UNKNOWN
PartitionName=cpu Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$NODE MaxTime=INFINITE State=UP
EOF

export SLURM_CONF="$ETC/slurm.conf"
"$STATE/exec" slurmctld -f "$SLURM_CONF"
"$STATE/exec" slurmd -f "$SLURM_CONF"

# wait until the node accepts jobs
for _ in $(seq 60); do
    state=$("$STATE/exec" sinfo -h -N -o %T 2>/dev/null | head -1 || true)
    case "$state" in idle | mixed | allocated) break ;; esac
    sleep 1
done
if [ "${state:-}" != idle ]; then
    echo "start.sh: node not idle (state '${state:-none}')" >&2
    tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
    false
fi
trap - ERR
echo "SLURM test cluster up: netns $NS, node $NODE, $CPUS CPUs, $NGPUS fake GPUs, SLURM_CONF=$SLURM_CONF"
