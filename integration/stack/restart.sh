#!/usr/bin/env bash
# Kills one process of the running stack as a crash does (SIGKILL) and starts it again with the
# same command after SECONDS (default 0): a Prometheus restarted with its WAL, as an agent
# restart looks to the stores. The pid file follows, so down.sh stops the new process.
#
#   integration/stack/restart.sh NAME [SECONDS]      e.g. prometheus-e 60
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

name=${1:?usage: restart.sh NAME [SECONDS]}
pause=${2:-0}
pid_file=$STACK_DIR/pids/$name.pid
cmd_file=$STACK_DIR/pids/$name.cmd
[ -f "$pid_file" ] && [ -f "$cmd_file" ] || die "no process $name in $STACK_DIR (see $STACK_DIR/pids)"
read -r pid started <"$pid_file"
if [ -n "$started" ] && [ "$(proc_start_time "$pid")" = "$started" ]; then
  kill -9 "$pid"
  # its data directory's lock goes with it
  while [ "$(proc_start_time "$pid")" = "$started" ]; do sleep 0.1; done
fi
# A restart still waiting is a process of the stack: down.sh stops it with the others, so a
# test that failed meanwhile leaves nothing behind to start a peer into a removed directory.
pending=$STACK_DIR/pids/$name.restart.pid
echo "$$ $(proc_start_time $$)" >"$pending"
log "$name killed; starting it again in ${pause}s"
sleep "$pause"
[ -f "$pending" ] || die "the stack went down: $name is not started again"
rm -f "$pending"
eval "set -- $(cat "$cmd_file")"
nohup "$@" >>"$STACK_DIR/logs/$name.log" 2>&1 &
echo "$! $(proc_start_time $!)" >"$pid_file"
log "$name started again (pid $!)"
