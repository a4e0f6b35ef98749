#!/usr/bin/env bash
# The agent's footprint: runs the release agent on this machine with the
# default configuration (facts of the real host, the file watch on), three
# probes every 10 s and an auth log receiving 50 lines/s, for a measured
# window (default 60 s) after its first full snapshot, and prints its peak
# RSS and its average CPU against the budget (15 MB, 1 % of one core).
#
#   agent/benches/footprint.sh [SECONDS]
#
# PROFILE=agent (default: the shipping build, opt-level s with LTO) or
# PROFILE=release.
#
# The first full snapshot (with the bounded world-writable/set-uid scan)
# is reported apart: it is a burst once an hour, not the steady state.
# Needs the local services (deploy/local/services up) for the broker.
set -euo pipefail

SECS=${1:-60}
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/driftwatch-footprint.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cd "$REPO"
deploy/local/services up >/dev/null
PROFILE=${PROFILE:-agent}
cargo build --profile "$PROFILE" --locked -q -p driftwatch-agent
AGENT=${CARGO_TARGET_DIR:-$REPO/target}/$PROFILE/driftwatch-agent

touch "$WORK/auth.log"
cat >"$WORK/agent.yaml" <<EOF
state_dir: $WORK/state
kafka:
  brokers: 127.0.0.1:9092
audit:
  authlog: [$WORK/auth.log]
  auditd: []
  journald: {enabled: false}
  poll_ms: 500
probes:
  - {id: clickhouse, kind: http, url: "http://127.0.0.1:8123/ping", interval_secs: 10}
  - {id: broker, kind: tcp, target: "127.0.0.1:9092", interval_secs: 10}
  - {id: resolver, kind: dns, target: localhost, interval_secs: 10}
EOF

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

NO_COLOR=1 "$AGENT" run --config "$WORK/agent.yaml" >"$WORK/agent.log" 2>&1 &
pid=$!
start=$(date +%s.%N)
# Wait for the first full snapshot to be collected.
for _ in $(seq 1 120); do
  grep -q 'kind=Full' "$WORK/agent.log" 2>/dev/null && break
  sleep 0.5
done
first=$(date +%s.%N)
first_ticks=$(ticks "$pid")
first_rss=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")

# 50 auth log lines per second for the window.
(
  i=0
  end=$(( $(date +%s) + SECS ))
  while [ "$(date +%s)" -lt "$end" ]; do
    for _ in $(seq 1 50); do
      i=$((i + 1))
      echo "Nov 29 10:00:00 bench sshd[$((1000 + i % 50))]: Failed password for invalid user bench$i from 127.0.0.1 port $((40000 + i % 20000)) ssh2"
    done >>"$WORK/auth.log"
    sleep 1
  done
) &
writer=$!

t0=$(date +%s.%N); c0=$(ticks "$pid")
rss_peak=0
for _ in $(seq 1 "$SECS"); do
  sleep 1
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
  [ "$rss" -gt "$rss_peak" ] && rss_peak=$rss
done
t1=$(date +%s.%N); c1=$(ticks "$pid")
wait "$writer" 2>/dev/null || true
hwm=$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

shipped=$(grep -c 'Failed password' "$WORK/auth.log" || true)
awk -v secs="$SECS" -v first="$(awk -v a="$first" -v b="$start" 'BEGIN {print a - b}')" -v fticks="$first_ticks" -v frss="$first_rss" \
    -v dt="$(awk -v a="$t1" -v b="$t0" 'BEGIN {print a - b}')" -v dc="$((c1 - c0))" -v hz="$hz" -v peak="$rss_peak" -v hwm="$hwm" -v lines="$shipped" -v profile="$PROFILE" 'BEGIN {
  cpu = 100 * dc / hz / dt
  printf "driftwatch-agent footprint (" profile " build, %d s window, 3 probes / 10 s, 50 audit lines/s, %d lines)\n", secs, lines
  printf "  first full snapshot: %.1f s, %.2f s of CPU, peak RSS so far %.1f MB\n", first, fticks / hz, frss / 1024
  printf "  steady state:        CPU %.2f %% of one core (budget 1 %%: %.2fx)\n", cpu, cpu / 1
  printf "                       RSS peak %.1f MB in the window, %.1f MB over the whole run (budget 15 MB: %.2fx)\n", peak / 1024, hwm / 1024, hwm / 1024 / 15
}'
