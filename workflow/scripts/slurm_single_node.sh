#!/usr/bin/env bash
# A real single-node SLURM (munged + slurmctld + slurmd) on a Debian machine where you are root,
# to run the workflow's SLURM profile without a cluster (tests/test_slurm.py does exactly this):
#
#   eval "$(workflow/scripts/slurm_single_node.sh start)"     # installs slurm-wlm + munge if missing
#   snakemake --profile workflow/profiles/slurm results/synthbirds
#   workflow/scripts/slurm_single_node.sh status
#   workflow/scripts/slurm_single_node.sh stop
#
# `start` prints only `export SLURM_CONF=...` on stdout (progress goes to stderr). Settings, from
# the environment:
#   SLURM_SINGLE_NODE_DIR   private folder: config, state, logs, PIDs   (default /tmp/starft-slurm)
#   SLURM_SINGLE_NODE_GPUS  fake GPUs the node advertises               (default 2)
#   SLURM_SINGLE_NODE_CPUS  CPUs the node advertises                    (default 32)
#   SLURM_SINGLE_NODE_MEM   memory the node advertises, MB              (default 256000)
#   SLURM_SINGLE_NODE_PORT  slurmctld port; slurmd uses PORT+1          (default 16817)
# The node advertises the CPUs, memory and GPUs above whatever the hardware has
# (SlurmdParameters=config_overrides), so that the profile's real requests (8 CPUs, 64 GB, 2 GPUs)
# are accepted here unchanged; jobs then share the real cores. The GPUs are fake, of model "fake":
# a GRES needs a device file or slurmd drops it (the node drains), so each fake GPU is a character
# device with /dev/null's numbers. Jobs still get CUDA_VISIBLE_DEVICES and SLURM_GPUS*, as on a
# real cluster.
#
# Facts this set-up rests on (measured on Debian 12, slurm-wlm 22.05, no systemd):
# - no systemd: the daemons are started here in the foreground (-D/-F) in their own session and
#   stopped by the PIDs recorded under $DIR/pids;
# - proctrack/linuxproc + task/none need no cgroups;
# - without slurmdbd there is no accounting: `sacct` fails, so the plugin must poll `squeue`
#   (the profile's slurm-status-command), which sees a finished job only for MinJobAge seconds;
#   the plugin keeps squeue only when MinJobAge >= 3x its first status delay (40 s by default),
#   else it falls back to sacct. MinJobAge is 3600 s here, so that a test can read every job back;
# - the SLURM plugin's job step strips SLURM_CONF from the environment of its inner `srun`, which
#   then reads the compiled-in /etc/slurm/slurm.conf: that path is linked to our config while the
#   cluster runs (and only if no other slurm.conf is there).
set -euo pipefail

DIR=${SLURM_SINGLE_NODE_DIR:-/tmp/starft-slurm}
GPUS=${SLURM_SINGLE_NODE_GPUS:-2}
CPUS=${SLURM_SINGLE_NODE_CPUS:-32}
MEM=${SLURM_SINGLE_NODE_MEM:-256000}
PORT=${SLURM_SINGLE_NODE_PORT:-16817}
GPU_TYPE=fake  # the GPU model, for the profile's gpu_model (--gpus=fake:N); --gpus=N matches too
NODE=starft1
PARTITION=debug
MIN_JOB_AGE=3600
ETC_CONF=/etc/slurm/slurm.conf
DAEMONS=(munged slurmctld slurmd)  # start order; stopped in reverse

say() { echo "slurm_single_node: $*" >&2; }
die() { say "error: $*"; exit 1; }

running() {  # running PID NAME: that process runs under that name (a PID may be reused) and is no zombie
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $stat == "$1 ($2) "* && ${stat#"$1 ($2) "} != Z* ]]
}

alive() {  # alive NAME: the daemon recorded under that name runs
    [[ -s $DIR/pids/$1 ]] && running "$(cat "$DIR/pids/$1")" "$1"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || die "slurm-wlm and munge are not installed and installing them needs root"
    command -v apt-get >/dev/null || die "slurm-wlm and munge are missing and this is no Debian (no apt-get)"
    say "installing slurm-wlm and munge from Debian"
    export DEBIAN_FRONTEND=noninteractive  # no debconf questions
    local pkgs=(slurm-wlm munge)
    if ! apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >"$DIR/apt.log" 2>&1; then
        apt-get update -qq >>"$DIR/apt.log" 2>&1 || true
        apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >>"$DIR/apt.log" 2>&1 \
            || { tail -20 "$DIR/apt.log" >&2; die "apt-get install ${pkgs[*]} failed (log: $DIR/apt.log)"; }
    fi
}

write_config() {
    local host
    host=$(hostname -s)
    local gres_files=()
    mkdir -p "$DIR"/{etc,state,spool,log,run,pids,dev,munge}
    chmod 755 "$DIR/munge"  # clients (sbatch, srun) must reach the socket
    for ((i = 0; i < GPUS; i++)); do
        # same major/minor as /dev/null: a device file slurmd accepts, harmless if opened
        [[ -c $DIR/dev/nvidia$i ]] || mknod -m 666 "$DIR/dev/nvidia$i" c 1 3
        gres_files+=("$DIR/dev/nvidia$i")
    done
    cat >"$DIR/etc/slurm.conf" <<EOF
# Written by workflow/scripts/slurm_single_node.sh: one node, no accounting, no cgroups.
ClusterName=starft
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$PORT
SlurmdPort=$((PORT + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MailProg=/bin/true
# finished jobs stay visible to squeue this long: the plugin's status command without slurmdbd
MinJobAge=$MIN_JOB_AGE
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=$NODE NodeHostname=$host NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM Gres=gpu:$GPU_TYPE:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
    {
        echo "# Fake GPUs (see workflow/scripts/slurm_single_node.sh)"
        for f in "${gres_files[@]}"; do echo "NodeName=$NODE Name=gpu Type=$GPU_TYPE File=$f"; done
    } >"$DIR/etc/gres.conf"
    [[ -s $DIR/munge/munge.key ]] || { head -c 1024 /dev/urandom >"$DIR/munge/munge.key"; chmod 400 "$DIR/munge/munge.key"; }
}

link_etc_conf() {
    mkdir -p "$(dirname "$ETC_CONF")"
    if [[ -L $ETC_CONF ]] && [[ $(readlink "$ETC_CONF") == "$DIR/etc/slurm.conf" ]]; then
        return
    fi
    if [[ -L $ETC_CONF ]] && [[ $(readlink "$ETC_CONF") == */etc/slurm.conf ]]; then
        # a link of this script from another folder: stale unless that cluster still runs
        local other
        other=$(readlink "$ETC_CONF")
        other=${other%/etc/slurm.conf}
        if [[ -d $other/pids ]]; then
            [[ -s $other/pids/slurmctld ]] && running "$(cat "$other/pids/slurmctld")" slurmctld \
                && die "another cluster of this script runs from $other: stop it first (SLURM_SINGLE_NODE_DIR=$other $0 stop)"
            rm -f "$ETC_CONF"
        fi
    fi
    if [[ -e $ETC_CONF || -L $ETC_CONF ]]; then
        die "$ETC_CONF exists (another SLURM set-up?); this script does not overwrite it"
    fi
    ln -s "$DIR/etc/slurm.conf" "$ETC_CONF"
}

launch() {  # launch NAME CMD...: run in its own session, record the PID
    local name=$1
    shift
    setsid "$@" >"$DIR/log/$name.out" 2>&1 </dev/null &
    echo $! >"$DIR/pids/$name"
}

show_logs() {
    for f in "$DIR"/log/*; do
        [[ -f $f ]] && { echo "--- $f"; tail -15 "$f"; } >&2
    done
}

start() {
    for d in "${DAEMONS[@]}"; do
        alive "$d" && die "$d already runs (PID $(cat "$DIR/pids/$d")); run '$0 stop' first"
    done
    rm -rf "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/run" "$DIR/pids"
    mkdir -p "$DIR"
    chmod 755 "$DIR"
    install_packages
    write_config
    link_etc_conf
    export SLURM_CONF=$DIR/etc/slurm.conf

    launch munged munged -F --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
        --pid-file="$DIR/run/munged.pid" --seed-file="$DIR/munge/munged.seed" --log-file="$DIR/log/munged.log"
    for _ in $(seq 50); do [[ -S $DIR/munge/munge.socket ]] && break; sleep 0.1; done
    [[ -S $DIR/munge/munge.socket ]] || { show_logs; stop; die "munged did not start"; }

    launch slurmctld slurmctld -D -f "$SLURM_CONF"
    launch slurmd slurmd -D -f "$SLURM_CONF" -N "$NODE"

    # ready when the node registered and is idle; a drained node says why
    local state=""
    for _ in $(seq 60); do
        state=$(sinfo -h -n "$NODE" -o %T 2>/dev/null || true)
        [[ $state == idle ]] && break
        for d in "${DAEMONS[@]}"; do alive "$d" || { show_logs; stop; die "$d exited at start"; }; done
        sleep 0.5
    done
    if [[ $state != idle ]]; then
        scontrol show node "$NODE" >&2 || true
        show_logs
        stop
        die "node $NODE is '${state:-unreachable}', not idle, after 30 s"
    fi
    say "up: node $NODE ($CPUS CPUs, $MEM MB, $GPUS GPUs of model $GPU_TYPE), partition $PARTITION, config $SLURM_CONF"
    echo "export SLURM_CONF=$SLURM_CONF"
}

stop() {
    export SLURM_CONF=$DIR/etc/slurm.conf
    # cancel this cluster's jobs first so that their slurmstepd processes end with them
    if alive slurmctld; then
        scancel --full --partition "$PARTITION" 2>/dev/null || true
        for _ in $(seq 20); do
            [[ -z $(squeue -h -t running,completing -p "$PARTITION" 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
    local i d pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        d=${DAEMONS[i]}
        if alive "$d"; then
            pid=$(cat "$DIR/pids/$d")
            kill "$pid" 2>/dev/null || true
            for _ in $(seq 50); do alive "$d" || break; sleep 0.1; done
            if alive "$d"; then kill -9 "$pid" 2>/dev/null || true; fi
        fi
        rm -f "$DIR/pids/$d"
    done
    if [[ -L $ETC_CONF ]] && [[ $(readlink "$ETC_CONF") == "$DIR/etc/slurm.conf" ]]; then
        rm -f "$ETC_CONF"
    fi
    say "stopped"
}

status() {
    local d rc=0
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then say "$d runs (PID $(cat "$DIR/pids/$d"))"; else say "$d is not running"; rc=1; fi
    done
    if [[ $rc == 0 ]]; then
        export SLURM_CONF=$DIR/etc/slurm.conf
        sinfo -N -o "%N %T %c %m %G" >&2
        squeue >&2
    fi
    return $rc
}

case ${1:-} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) echo "usage: $0 start|stop|status   (see the comments at the top)" >&2; exit 2 ;;
esac
