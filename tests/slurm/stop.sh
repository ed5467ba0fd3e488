#!/usr/bin/env bash
# Stops the test cluster that tests/slurm/start.sh STATE_DIR started: cancels its jobs, terminates
# every process inside its network namespace (munged, slurmctld, slurmd, slurmstepd, job processes:
# all were started there by start.sh), then deletes the namespace.
#
#   tests/slurm/stop.sh STATE_DIR     that cluster; safe to call twice or after a partial start
#   tests/slurm/stop.sh --stale       every test cluster whose STATE_DIR is gone (a killed test run)
#
# Exit status 1 if a process would not die.
set -uo pipefail

REGISTRY=/run/wsss-slurm  # one file per running test cluster: namespace name -> STATE_DIR

stop_ns() {  # NS [STATE_DIR]
    local ns=$1 state=${2:-} pids left
    if ip netns list 2>/dev/null | grep -qw "$ns"; then
        if [ -n "$state" ] && [ -x "$state/exec" ]; then
            timeout 10 "$state/exec" scancel --full --quiet --user=root >/dev/null 2>&1 || true
        fi
        for signal in TERM KILL KILL; do  # slurmstepd ignores TERM
            pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
            [ -z "${pids// /}" ] && break
            # shellcheck disable=SC2086
            kill -s "$signal" $pids 2>/dev/null || true
            for _ in $(seq 20); do
                sleep 0.25
                [ -z "$(ip netns pids "$ns" 2>/dev/null)" ] && break
            done
        done
        left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        ip netns delete "$ns" 2>/dev/null || true
        if [ -n "${left// /}" ]; then
            echo "stop.sh: processes still alive in $ns: $left" >&2
            return 1
        fi
    fi
    rm -f "$REGISTRY/$ns"
}

if [ "${1:-}" = --stale ]; then
    status=0
    for record in "$REGISTRY"/wsss-slurm-*; do
        [ -f "$record" ] || continue
        [ -d "$(cat "$record")" ] && continue
        stop_ns "$(basename "$record")" || status=1
    done
    exit $status
fi

STATE=${1:?usage: stop.sh STATE_DIR | --stale}
STATE=$(cd "$STATE" 2>/dev/null && pwd) || { echo "stop.sh: no $1" >&2; exit 0; }
stop_ns "wsss-slurm-$(printf '%s' "$STATE" | md5sum | cut -c1-10)" "$STATE"
