#!/usr/bin/env bash
# A real single-node SLURM on localhost, run as plain processes (no systemd), for tests and demos.
#
#   bench/slurm_local.sh start [STATE_DIR]   # write slurm.conf, start slurmctld + slurmd, wait for 'idle'
#   bench/slurm_local.sh status [STATE_DIR]  # sinfo/squeue of that instance
#   bench/slurm_local.sh stop [STATE_DIR]    # stop the daemons it started (by their pid files)
#
# STATE_DIR (default /tmp/cryocare-slurm) holds slurm.conf, state, spool, logs and pid files. After
# 'start', point the clients at it:  export SLURM_CONF=STATE_DIR/slurm.conf  (also in STATE_DIR/env.sh).
#
# Needs the Debian packages slurm-wlm (slurmctld, slurmd, clients) and, for SLURM_LOCAL_AUTH=munge,
# munge:  apt-get install -y --no-install-recommends slurm-wlm munge
# Must run as root (SlurmUser=root; slurmd starts jobs as the submitting user).
#
# Environment:
#   SLURM_LOCAL_AUTH     none (default: AuthType=auth/none, CredType=cred/none) or munge
#   SLURM_LOCAL_TIMEOUT  seconds to wait for the node to become idle (default 30)
#   SLURM_LOCAL_CPUS     CPUs the node offers (default: nproc)
#
# Exit codes: 0 ok, 2 usage, 3 slurm/munge not installed or not root, 4 did not start in time.
set -euo pipefail

cmd=${1:-}
state=${2:-/tmp/cryocare-slurm}
auth=${SLURM_LOCAL_AUTH:-none}
timeout=${SLURM_LOCAL_TIMEOUT:-30}

die() { echo "slurm_local: $1" >&2; exit "${2:-1}"; }

free_port() {  # a free TCP port on localhost
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

do_stop() {  # TERM every daemon this instance started (by its pid file), wait up to 10 s, then KILL
    local pids=() f name pid
    if [[ -s $state/slurm.conf && -s $state/slurmctld.pid ]] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
        # cancel this instance's jobs first, so no job processes outlive the daemons
        SLURM_CONF=$state/slurm.conf timeout 10 scancel --full --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(SLURM_CONF=$state/slurm.conf timeout 5 squeue -h -t R,CG 2>/dev/null) ]] && break
            sleep 0.1
        done
    fi
    for f in slurmd:slurmd.pid slurmctld:slurmctld.pid munged:munge/munged.pid; do
        name=${f%%:*}
        f=$state/${f#*:}
        [[ -s $f ]] || continue
        pid=$(cat "$f")
        if kill -0 "$pid" 2>/dev/null && grep -q "$name" "/proc/$pid/comm" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$f"
    done
    for _ in $(seq 100); do
        local alive=0
        for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    echo "slurm_local: stopped ($state)"
}

write_conf() {  # write_conf CTLD_PORT SLURMD_PORT
    local cpus mem_mb
    cpus=${SLURM_LOCAL_CPUS:-$(nproc)}
    mem_mb=$(awk '/MemTotal/ {printf "%d", $2 / 1024 * 0.9}' /proc/meminfo)
    {
        echo "ClusterName=cryocare-local"
        echo "SlurmctldHost=localhost"
        echo "SlurmctldPort=$1"
        echo "SlurmdPort=$2"
        echo "SlurmUser=root"
        echo "SlurmdUser=root"
        if [[ $auth == munge ]]; then
            echo "AuthType=auth/munge"
            echo "CredType=cred/munge"
            echo "AuthInfo=socket=$state/munge/run/munge.socket.2"
        else
            echo "AuthType=auth/none"
            echo "CredType=cred/none"
        fi
        echo "StateSaveLocation=$state/ctld"
        echo "SlurmdSpoolDir=$state/spool"
        echo "SlurmctldPidFile=$state/slurmctld.pid"
        echo "SlurmdPidFile=$state/slurmd.pid"
        echo "SlurmctldLogFile=$state/log/slurmctld.log"
        echo "SlurmdLogFile=$state/log/slurmd.log"
        echo "ProctrackType=proctrack/linuxproc"
        echo "TaskPlugin=task/none"
        echo "JobAcctGatherType=jobacct_gather/none"
        echo "AccountingStorageType=accounting_storage/none"
        echo "JobCompType=jobcomp/none"
        echo "SelectType=select/cons_tres"
        echo "SelectTypeParameters=CR_CPU"
        echo "SchedulerType=sched/backfill"
        echo "SchedulerParameters=batch_sched_delay=0"
        echo "SlurmdParameters=config_overrides"
        echo "MpiDefault=none"
        echo "SwitchType=switch/none"
        echo "ReturnToService=2"
        echo "MailProg=/bin/true"
        echo "InactiveLimit=0"
        echo "KillWait=5"
        echo "MinJobAge=600"
        echo "SlurmctldTimeout=30"
        echo "SlurmdTimeout=30"
        echo "NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN"
        echo "PartitionName=local Nodes=localhost Default=YES MaxTime=INFINITE State=UP"
    } >"$state/slurm.conf"
}

start_munge() {
    command -v munged >/dev/null || die "munged not found; apt-get install -y munge (or use SLURM_LOCAL_AUTH=none)" 3
    # munged insists on: key 0600 owned by its user, socket folder 0755 inside a parent not writable by others.
    install -d -m 0711 "$state/munge"
    install -d -m 0755 "$state/munge/run" "$state/munge/lib" "$state/munge/log"
    [[ -s $state/munge/munge.key ]] || head -c 1024 /dev/urandom >"$state/munge/munge.key"
    chmod 0600 "$state/munge/munge.key"
    munged --force --key-file="$state/munge/munge.key" --socket="$state/munge/run/munge.socket.2" \
        --pid-file="$state/munge/munged.pid" --log-file="$state/munge/log/munged.log" \
        --seed-file="$state/munge/lib/munged.seed" || die "munged failed to start; see $state/munge/log/munged.log" 4
}

do_start() {
    [[ $(id -u) == 0 ]] || die "must run as root (SlurmUser=root)" 3
    for b in slurmctld slurmd sinfo sbatch; do
        command -v "$b" >/dev/null || die "$b not found; apt-get install -y --no-install-recommends slurm-wlm" 3
    done
    [[ $auth == none || $auth == munge ]] || die "SLURM_LOCAL_AUTH must be none or munge, not '$auth'" 2
    if [[ -s $state/slurmctld.pid ]] && kill -0 "$(cat "$state/slurmctld.pid")" 2>/dev/null; then
        die "already running in $state; run '$0 stop $state' first" 2
    fi
    mkdir -p "$state"
    state=$(cd "$state" && pwd)
    install -d -m 0755 "$state/ctld" "$state/spool" "$state/log"
    write_conf "$(free_port)" "$(free_port)"
    export SLURM_CONF=$state/slurm.conf
    echo "export SLURM_CONF=$SLURM_CONF" >"$state/env.sh"
    [[ $auth == munge ]] && start_munge
    local t0=$SECONDS
    slurmctld -c -f "$SLURM_CONF" || die "slurmctld failed to start; see $state/log/slurmctld.log" 4
    slurmd -N localhost -f "$SLURM_CONF" || die "slurmd failed to start; see $state/log/slurmd.log" 4
    local deadline=$((SECONDS + timeout)) st=""
    while ((SECONDS < deadline)); do
        st=$(sinfo -h -n localhost -o %T 2>/dev/null | head -n1 || true)
        [[ $st == idle ]] && break
        sleep 0.2
    done
    if [[ $st != idle ]]; then
        do_stop >/dev/null
        die "node did not become idle within ${timeout}s (state '${st:-none}'); see $state/log" 4
    fi
    echo "slurm_local: idle after $((SECONDS - t0))s; export SLURM_CONF=$SLURM_CONF" >&2
    echo "export SLURM_CONF=$SLURM_CONF"
}

do_status() {
    [[ -s $state/slurm.conf ]] || die "no instance in $state" 2
    export SLURM_CONF=$state/slurm.conf
    sinfo
    squeue --states=all
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    status) do_status ;;
    *) die "usage: $0 start|status|stop [STATE_DIR]" 2 ;;
esac
