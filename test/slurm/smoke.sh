#!/usr/bin/env bash
# Smoke test of the local Slurm cluster (scripts/slurm-local): real sbatch, srun, scancel and job environment.
#
#   test/slurm/smoke.sh [--state-dir DIR]
#
# Prints PASS or FAIL per check and exits 1 if any failed. A cluster that was already running is reused and
# left running; one this script started is stopped at the end (that stop is itself checked). Run as root.
#
# Job scripts are single-quoted on purpose: their $SLURM_* variables expand inside the job.
# shellcheck disable=SC2016
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)"
SLURM_LOCAL="$ROOT/scripts/slurm-local"
ARGS=("$@")
WORK="$(mktemp -d /tmp/slurm-smoke.XXXXXX)"
NODE="$(hostname -s)"
FAILED=0
trap 'rm -rf "$WORK"' EXIT

pass() { printf 'PASS %s\n' "$1"; }
fail() {
  printf 'FAIL %s: %s\n' "$1" "$2"
  FAILED=1
}

# The state of job $1 (RUNNING, COMPLETED, CANCELLED, ...), from the controller.
job_state() { scontrol show job -o "$1" 2>/dev/null | grep -o 'JobState=[A-Z_]*' | cut -d= -f2; }

# Wait up to $3 seconds until job $1 is in state $2.
wait_job_state() {
  local tenths=$(($3 * 10))
  while ((tenths-- > 0)); do
    [[ "$(job_state "$1")" == "$2" ]] && return 0
    sleep 0.1
  done
  return 1
}

# Submit a job (sbatch arguments in "$@"), wait up to 60 s for it to end, print its id; true iff it COMPLETED.
# Polls the controller every 0.1 s: sbatch --wait polls every 2 s or more, which triples the test's time.
run_job() {
  local id state tenths=600
  id="$(sbatch --parsable "$@")" || return 1
  printf '%s' "$id"
  while ((tenths-- > 0)); do
    state="$(job_state "$id")"
    [[ "$state" =~ ^(PENDING|CONFIGURING|RUNNING|COMPLETING|)$ ]] || break
    sleep 0.1
  done
  [[ "$state" == COMPLETED ]]
}

# Pids of running (not zombie) processes whose environment says they belong to job $1 of this cluster.
job_processes() {
  local dir pid stat
  for dir in /proc/[0-9]*; do
    pid="${dir#/proc/}"
    grep -qz "^SLURM_JOB_ID=$1\$" "$dir/environ" 2>/dev/null || continue
    grep -qzF "SLURM_CONF=$SLURM_CONF" "$dir/environ" 2>/dev/null || continue
    stat="$(cat "$dir/stat" 2>/dev/null)" || continue
    stat="${stat##*) }"
    [[ "${stat%% *}" == Z ]] || printf '%s ' "$pid"
  done
}

# The pids of the running daemons, from `slurm-local status`, on one line.
daemon_pids() {
  "$SLURM_LOCAL" status "${ARGS[@]}" 2>/dev/null | grep -o 'pid [0-9]*' | cut -d' ' -f2 | paste -sd' '
}

check_batch() {
  local id out
  id="$(sbatch --parsable --wait -o "$WORK/batch-%j.out" --wrap 'hostname; echo $SLURM_JOB_ID')" ||
    { fail batch "sbatch --wait exited non-zero (job ${id:-none})"; return; }
  out="$WORK/batch-$id.out"
  [[ -f "$out" ]] || { fail batch "no output file $out"; return; }
  [[ "$(sed -n 1p "$out")" == "$(hostname)" ]] ||
    { fail batch "line 1 is not $(hostname): $(<"$out")"; return; }
  [[ "$(sed -n 2p "$out")" == "$id" ]] || { fail batch "line 2 is not the job id $id: $(<"$out")"; return; }
  [[ "$(job_state "$id")" == COMPLETED ]] || { fail batch "job $id is $(job_state "$id")"; return; }
  pass "batch (sbatch --wait --wrap 'hostname; echo \$SLURM_JOB_ID' -> job $id)"
}

check_two_tasks() {
  local id out got
  id="$(run_job -N1 -n2 -o "$WORK/tasks-%j.out" \
    --wrap 'srun bash -c "echo task \$SLURM_PROCID of \$SLURM_NTASKS on \$SLURM_NODEID"')" ||
    { fail two-tasks "job ${id:-none} is $(job_state "$id"), not COMPLETED"; return; }
  out="$WORK/tasks-$id.out"
  got="$(sort "$out" 2>/dev/null | tr '\n' ';')"
  [[ "$got" == "task 0 of 2 on 0;task 1 of 2 on 0;" ]] || { fail two-tasks "output was: $got"; return; }
  pass "two-tasks (sbatch -N1 -n2, srun: task 0 and task 1 on node 0)"
}

check_scancel() {
  local id pid left
  id="$(sbatch --parsable -o "$WORK/sleep-%j.out" --wrap "sleep 300 & echo \$! > $WORK/sleep.pid; wait")" ||
    { fail scancel "sbatch of sleep 300 failed"; return; }
  wait_job_state "$id" RUNNING 30 ||
    { fail scancel "job $id is $(job_state "$id"), not RUNNING, after 30 s"; return; }
  for _ in $(seq 100); do
    [[ -s "$WORK/sleep.pid" ]] && break
    sleep 0.1
  done
  pid="$(cat "$WORK/sleep.pid" 2>/dev/null)"
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" == "sleep 300 " ]] ||
    { fail scancel "no running 'sleep 300' recorded by job $id (pid '${pid}')"; return; }
  scancel "$id" || { fail scancel "scancel $id exited non-zero"; return; }
  wait_job_state "$id" CANCELLED 15 ||
    { fail scancel "job $id is $(job_state "$id") 15 s after scancel"; return; }
  for _ in $(seq 100); do
    left="$(job_processes "$id")"
    [[ -z "$left" ]] && break
    sleep 0.1
  done
  [[ -z "$left" ]] || { fail scancel "processes of job $id still running: $left"; return; }
  [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" != "sleep 300 " ]] ||
    { fail scancel "sleep 300 (pid $pid) still running"; return; }
  pass "scancel (job $id CANCELLED, its sleep 300 and every process of the job gone)"
}

# The variables a launcher uses to pick the torchrun rendezvous host (the first node of the job).
check_environment() {
  local id out want
  id="$(run_job -o "$WORK/env-%j.out" --wrap 'env | grep ^SLURM_ | sort
    first="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)"
    echo "RENDEZVOUS_HOST=$first"; getent hosts "$first" >/dev/null && echo RENDEZVOUS_RESOLVES=yes')" ||
    { fail environment "job ${id:-none} is $(job_state "$id"), not COMPLETED"; return; }
  out="$WORK/env-$id.out"
  for want in "SLURM_JOB_ID=$id" "SLURM_JOB_NODELIST=$NODE" SLURM_NODEID=0 SLURM_NNODES=1 SLURM_PROCID=0 \
    SLURM_JOB_NUM_NODES=1 "SLURM_CONF=$SLURM_CONF" "RENDEZVOUS_HOST=$NODE" RENDEZVOUS_RESOLVES=yes; do
    grep -qxF "$want" "$out" || { fail environment "job $id lacks the line $want"; return; }
  done
  pass "environment (SLURM_JOB_NODELIST=$NODE SLURM_NODEID=0 SLURM_NNODES=1; rendezvous host resolves)"
}

check_start_again() {
  local before after env
  before="$(daemon_pids)"
  env="$("$SLURM_LOCAL" start "${ARGS[@]}" 2>/dev/null)" ||
    { fail start-again "second start failed"; return; }
  after="$(daemon_pids)"
  [[ "$env" == "export SLURM_CONF=$SLURM_CONF" ]] || { fail start-again "printed: $env"; return; }
  [[ "$before" == "$after" && -n "$before" ]] ||
    { fail start-again "daemons changed: $before -> $after"; return; }
  pass "start-again (reused the running daemons: $after)"
}

# kill -9 the daemons with a job running, as a crash would: start must clean the stale pid files, come up
# with new daemons, and cancel the job left from before together with its processes.
check_crash_recovery() {
  local id before after left name state
  id="$(sbatch --parsable -o /dev/null --wrap 'sleep 300')" ||
    { fail crash-recovery "sbatch failed"; return; }
  wait_job_state "$id" RUNNING 30 || { fail crash-recovery "job $id not RUNNING after 30 s"; return; }
  before="$(daemon_pids)"
  for name in slurmd slurmctld munged; do
    kill -KILL "$(cat "$(dirname "$SLURM_CONF")/run/$name.pid")"
  done
  "$SLURM_LOCAL" status "${ARGS[@]}" >/dev/null 2>&1 && { fail crash-recovery "status says running"; return; }
  "$SLURM_LOCAL" start "${ARGS[@]}" >/dev/null 2>&1 ||
    { fail crash-recovery "start after kill -9 failed"; return; }
  after="$(daemon_pids)"
  [[ -n "$after" && "$after" != "$before" ]] || { fail crash-recovery "daemons: $before -> $after"; return; }
  # A job submitted just before the crash may be missing from the controller's saved state: it is then
  # unknown (its step is reported as an orphan and killed). Either way it must not be running.
  state="$(job_state "$id")"
  [[ "$state" =~ ^(CANCELLED|)$ ]] || { fail crash-recovery "job $id is $state"; return; }
  for _ in $(seq 100); do
    left="$(job_processes "$id")"
    [[ -z "$left" ]] && break
    sleep 0.1
  done
  [[ -z "$left" ]] || { fail crash-recovery "processes of job $id still running: $left"; return; }
  pass "crash-recovery (after kill -9: new daemons $after, job $id ${state:-lost} and its processes gone)"
}

# Stop with a job running: the job must be cancelled with its processes, and the daemons must be gone.
check_stop() {
  local id pids left
  id="$(sbatch --parsable -o /dev/null --wrap 'sleep 300')" || { fail stop "sbatch failed"; return; }
  wait_job_state "$id" RUNNING 30 || { fail stop "job $id not RUNNING after 30 s"; return; }
  pids="$(daemon_pids)"
  "$SLURM_LOCAL" stop "${ARGS[@]}" 2>/dev/null || { fail stop "slurm-local stop exited non-zero"; return; }
  left="$(job_processes "$id")"
  [[ -z "$left" ]] || { fail stop "processes of job $id still running: $left"; return; }
  for pid in $pids; do
    [[ "$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" != *"$(dirname "$SLURM_CONF")/"* ]] ||
      { fail stop "daemon pid $pid still running"; return; }
  done
  "$SLURM_LOCAL" status "${ARGS[@]}" >/dev/null 2>&1 && { fail stop "status still says running"; return; }
  pass "stop (job $id cancelled, daemons $pids gone, status exits 3)"
}

main() {
  local started=0 env
  "$SLURM_LOCAL" status "${ARGS[@]}" >/dev/null 2>&1 || started=1
  if ! env="$("$SLURM_LOCAL" start "${ARGS[@]}")"; then
    fail start "scripts/slurm-local start failed (its messages are above)"
    exit 1
  fi
  eval "$env"
  pass "start (SLURM_CONF=$SLURM_CONF)"
  cd "$WORK" || exit 1
  check_batch
  check_two_tasks
  check_scancel
  check_environment
  check_start_again
  # Only a cluster this script started is crashed and stopped.
  if ((started)); then
    check_crash_recovery
    check_stop
  fi
  ((FAILED == 0)) && echo "all checks passed" || echo "some checks FAILED"
  exit "$FAILED"
}

main
