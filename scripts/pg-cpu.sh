#!/usr/bin/env bash
# Prints the CPU time (clock ticks, user + system) PostgreSQL has spent on this machine: every
# live postgres process's own, plus what the postmaster collected from children that exited
# (a backend's time moves there when its connection closes). The difference between two
# readings, taken before a run and after its connections closed, is what the run cost the
# database, backends, WAL writer, checkpointer and autovacuum included.
set -euo pipefail
total=0
for stat in /proc/[0-9]*/stat; do
    read -r line <"$stat" 2>/dev/null || continue
    comm=${line#*(}; comm=${comm%%)*}
    [[ $comm == postgres* ]] || continue
    rest=${line##*) }
    # Fields after the command: 3 state … 14 utime 15 stime 16 cutime 17 cstime (1-based in
    # proc(5)); here the state is field 1.
    read -r -a f <<<"$rest"
    total=$((total + f[11] + f[12]))
    # The postmaster is the postgres process whose parent is not postgres.
    ppid=${f[1]}
    pcomm=$(cat "/proc/$ppid/comm" 2>/dev/null || true)
    if [[ $pcomm != postgres* ]]; then
        total=$((total + f[13] + f[14]))
    fi
done
echo "$total"
