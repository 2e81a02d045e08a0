#!/usr/bin/env bash
# bench/run.sh measures RecoveryService and reports every figure as a ratio
# of a baseline measured side by side with it (`make bench` runs it).
#
#  1. Go benchmarks: each is a pair, impl=baseline (the bare library call, or
#     the same work without recoveryd) and impl=ours, run back to back in one
#     test process. BENCH_ROUNDS rounds of -test.count=1 give the -count
#     samples benchstat needs, interleaved in time so that load from other
#     work on the machine falls on both halves of a pair alike.
#  2. ghz: a real recoveryd binary on a free loopback port with the embedded
#     sandbox in a temporary data dir; AssignKey for an already assigned user
#     against the baseline grpc.health.v1.Health/Check, bounded in calls
#     (--total), per-call time (--timeout) and overall time (timeout(1):
#     ghz ignores --total whenever --duration is given).
#
# It prints one table per section and keeps the raw results in bench/out/.
# It kills only the processes it started, at exit, whatever the exit path.
#
# Knobs (environment): BENCH_ROUNDS (6), BENCH_TIME (1s), BENCH_FILTER (.),
# GHZ_ROUNDS (3), GHZ_TOTAL (5000), GHZ_CONCURRENCY (4), GHZ_TIMEOUT (5s),
# GHZ_MAX_SECONDS (60), BENCH_OUT (bench/out). A quick smoke of the script:
#   BENCH_ROUNDS=1 BENCH_TIME=1x GHZ_ROUNDS=1 GHZ_TOTAL=50 bench/run.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/.bin:$PATH"

BENCH_ROUNDS=${BENCH_ROUNDS:-6}
BENCH_TIME=${BENCH_TIME:-1s}
BENCH_FILTER=${BENCH_FILTER:-.}
GHZ_ROUNDS=${GHZ_ROUNDS:-3}
GHZ_TOTAL=${GHZ_TOTAL:-5000}
GHZ_CONCURRENCY=${GHZ_CONCURRENCY:-4}
GHZ_TIMEOUT=${GHZ_TIMEOUT:-5s}
GHZ_MAX_SECONDS=${GHZ_MAX_SECONDS:-60}
OUT=${BENCH_OUT:-$ROOT/bench/out}

# The packages holding paired benchmarks.
GO_PACKAGES=(keycrypto cmd/recoveryd/app)
# The RecoveryService's name in health checks.
SERVICE=recovery.v1.RecoveryService
# How long recoveryd may take to listen, turn SERVING and go idle.
START_SECONDS=60

fail() {
	echo "bench: $*" >&2
	exit 1
}

for tool in go benchstat ghz grpcurl jq awk timeout; do
	command -v "$tool" >/dev/null || fail "$tool is not on PATH or in .bin/ (run \`make tools\`; jq: \`make system-deps\`)"
done
[[ $BENCH_ROUNDS -ge 5 ]] || echo "bench: warning: BENCH_ROUNDS=$BENCH_ROUNDS; the figures need at least 5 samples (6 for confidence intervals)" >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/recoveryd-bench.XXXXXX")
# The PIDs this script started and has not yet reaped: recoveryd, and the
# benchmark or ghz run in progress. A reaped PID is dropped at once, so
# cleanup can never signal a process that merely reused the number.
server=""
current=""
cleanup() {
	local status=$?
	for pid in $current $server; do
		stop "$pid"
	done
	rm -rf "$work"
	exit "$status"
}
# stop ends one of our processes: TERM, up to 10 s to exit, then KILL.
stop() {
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
# tracked runs a command in the background and waits for it, so that a
# signal reaches cleanup at once rather than after the command has finished.
tracked() {
	local status=0
	"$@" &
	current=$!
	wait "$current" || status=$?
	current=""
	return "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
rm -f "$OUT"/go-bench.txt "$OUT"/benchstat.txt "$OUT"/ghz-*.json "$OUT"/summary.txt

# --- machine -----------------------------------------------------------------

{
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (working tree differs)')"
	echo "go:      $(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"
	echo "cpu:     $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown), $(nproc) cores"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (1, 5, 15 min) at start"
} | tee "$OUT/summary.txt"

# --- Go benchmarks -------------------------------------------------------------

echo
echo ">> building the benchmark binaries"
for pkg in "${GO_PACKAGES[@]}"; do
	(cd "$ROOT" && go test -c -o "$work/${pkg//\//_}.test" "./$pkg")
done

echo ">> Go benchmarks: $BENCH_ROUNDS rounds, -benchtime $BENCH_TIME, filter $BENCH_FILTER"
mkdir -p "$work/tmp" # the benchmarks' temporary dirs, removed at exit even if they are killed
for round in $(seq "$BENCH_ROUNDS"); do
	echo "   round $round/$BENCH_ROUNDS"
	for pkg in "${GO_PACKAGES[@]}"; do
		# A test binary runs in its package directory (testdata/ is relative).
		tracked env -C "$ROOT/$pkg" TMPDIR="$work/tmp" "$work/${pkg//\//_}.test" -test.run '^$' -test.bench "$BENCH_FILTER" \
			-test.benchtime "$BENCH_TIME" -test.benchmem -test.count 1 -test.timeout 10m >>"$OUT/go-bench.txt" ||
			fail "benchmarks of $pkg failed; output in $OUT/go-bench.txt"
	done
done
grep -q '^Benchmark' "$OUT/go-bench.txt" || fail "no benchmark ran (filter $BENCH_FILTER)"

# Columns: baseline first, so benchstat's "vs base" is ours against it.
benchstat -col '/impl@(baseline ours)' "$OUT/go-bench.txt" >"$OUT/benchstat.txt" 2>&1
benchstat -format csv -col '/impl@(baseline ours)' "$OUT/go-bench.txt" 2>/dev/null >"$work/benchstat.csv"

{
	echo
	echo "Go benchmarks: median of $BENCH_ROUNDS runs, -benchtime $BENCH_TIME; ratio = ours / baseline"
	echo "(time: above 1 is slower than the baseline; throughput: below 1 is slower)"
	awk -F, '
		function t(s) {
			if (s < 1e-6) return sprintf("%.0fns", s * 1e9)
			if (s < 1e-3) return sprintf("%.2fus", s * 1e6)
			if (s < 1)    return sprintf("%.2fms", s * 1e3)
			return sprintf("%.2fs", s)
		}
		BEGIN { printf "%-28s %-10s %12s %12s %8s  %s\n", "benchmark", "metric", "baseline", "ours", "ratio", "benchstat" }
		/^pkg: / { pkg = $0; sub(/^pkg: .*\//, "", pkg); next }
		$1 == "" && $3 == "CI" { unit = $2; next }
		$1 == "" || $1 == "geomean" || NF < 7 { next }
		$2 != "" && $4 != "" && (unit == "sec/op" || unit == "B/s") {
			name = $1; sub(/-[0-9]+$/, "", name)
			if (unit == "sec/op") { metric = "time/op"; b = t($2); o = t($4) }
			else { metric = "MB/s"; b = sprintf("%.1f", $2 / 1e6); o = sprintf("%.1f", $4 / 1e6) }
			ratio = ($2 > 0) ? sprintf("%.2fx", $4 / $2) : "-"
			printf "%-28s %-10s %12s %12s %8s  %s %s\n", pkg "." name, metric, b, o, ratio, $6, $7
		}
	' "$work/benchstat.csv"
} | tee -a "$OUT/summary.txt"

# --- ghz against a real recoveryd ------------------------------------------------

echo
echo ">> building recoveryd"
(cd "$ROOT" && go build -o "$work/recoveryd" ./cmd/recoveryd)

log="$work/recoveryd.log"
"$work/recoveryd" --listen 127.0.0.1:0 --admin-listen= --data-dir "$work/data" >"$log" 2>&1 &
server=$!

show_log() {
	echo "--- last lines of recoveryd's log ---" >&2
	tail -n 20 "$log" >&2
}

# The address: recoveryd logs the port the kernel chose for :0.
addr=""
for _ in $(seq $((START_SECONDS * 5))); do
	kill -0 "$server" 2>/dev/null || { show_log; fail "recoveryd exited during start"; }
	addr=$(grep -m1 -o '"msg":"serving gRPC","address":"[^"]*"' "$log" | sed 's/.*"address":"\([^"]*\)"/\1/' || true)
	[[ -n $addr ]] && break
	sleep 0.2
done
[[ -n $addr ]] || { show_log; fail "recoveryd did not report its address within ${START_SECONDS}s"; }

health_request="{\"service\":\"$SERVICE\"}"
serving=""
for _ in $(seq $((START_SECONDS * 5))); do
	serving=$(grpcurl -plaintext -max-time 2 -d "$health_request" "$addr" grpc.health.v1.Health/Check 2>/dev/null | jq -r '.status // empty' || true)
	[[ $serving == SERVING ]] && break
	sleep 0.2
done
[[ $serving == SERVING ]] || { show_log; fail "recoveryd at $addr is not SERVING after ${START_SECONDS}s (last status: ${serving:-none})"; }
echo "   recoveryd (pid $server) SERVING on $addr"

assign_request='{"user_identifier":"bench-user","key_environment":"KEY_ENVIRONMENT_HOT","organisation":{"customer_id":"bench-co","customer_name":"Bench Co"},"package":{"package_id":"gold","package_name":"Gold"}}'

# The first assignment takes a key from the emulator's pool; every later
# call with the same terms is a repeat the registry answers.
key_id=$(grpcurl -plaintext -max-time 30 -d "$assign_request" "$addr" "$SERVICE/AssignKey" | jq -r '.key.keyId // empty')
[[ -n $key_id ]] || { show_log; fail "the first AssignKey returned no key"; }
repeat=$(grpcurl -plaintext -max-time 30 -d "$assign_request" "$addr" "$SERVICE/AssignKey" | jq -r '.alreadyAssigned // false')
[[ $repeat == true ]] || fail "a repeated AssignKey is not already_assigned"

# cpu_ticks is the user+system CPU time recoveryd has used, in clock ticks.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$server/stat"; }

# wait_idle returns once recoveryd used under 5% of a core for a second: the
# emulator refills its key pool (RSA-4096 generation, seconds of CPU) after
# the assignment, and that must not land on a measurement.
wait_idle() {
	local prev now hz
	hz=$(getconf CLK_TCK)
	prev=$(cpu_ticks)
	for _ in $(seq "$START_SECONDS"); do
		sleep 1
		now=$(cpu_ticks)
		if ((now - prev <= hz / 20)); then return 0; fi
		prev=$now
	done
	echo "bench: warning: recoveryd still busy after ${START_SECONDS}s; measuring anyway" >&2
}

# run_ghz NAME CALL DATA ROUND: one bounded ghz run, its JSON report kept.
run_ghz() {
	local name=$1 call=$2 data=$3 round=$4 report="$OUT/ghz-$1-$4.json"
	tracked timeout --kill-after=5 "$GHZ_MAX_SECONDS" ghz --insecure --call "$call" -d "$data" \
		--total "$GHZ_TOTAL" --concurrency "$GHZ_CONCURRENCY" --connections 1 --timeout "$GHZ_TIMEOUT" \
		--format json "$addr" >"$report" || fail "ghz $name (round $round) failed or ran past ${GHZ_MAX_SECONDS}s"
	jq -e --argjson total "$GHZ_TOTAL" '.count == $total and (.statusCodeDistribution.OK // 0) == $total' "$report" >/dev/null ||
		fail "ghz $name (round $round): not every call succeeded: $(jq -c '{count, statusCodeDistribution, errorDistribution}' "$report")"
}

echo ">> warming up, then waiting for recoveryd to go idle"
warm=$((GHZ_TOTAL < 500 ? GHZ_TOTAL : 500))
GHZ_TOTAL=$warm run_ghz warmup-health grpc.health.v1.Health/Check "$health_request" 0
GHZ_TOTAL=$warm run_ghz warmup-assign "$SERVICE/AssignKey" "$assign_request" 0
rm -f "$OUT"/ghz-warmup-*.json
wait_idle

echo ">> ghz: $GHZ_ROUNDS rounds of $GHZ_TOTAL calls each, concurrency $GHZ_CONCURRENCY on one connection"
for round in $(seq "$GHZ_ROUNDS"); do
	echo "   round $round/$GHZ_ROUNDS"
	run_ghz health grpc.health.v1.Health/Check "$health_request" "$round"
	run_ghz assign-repeat "$SERVICE/AssignKey" "$assign_request" "$round"
done

# stats NAME prints "rps p50_ns p99_ns", each the median over the rounds.
stats() {
	jq -s -r '
		def median: sort | .[(length - 1) / 2 | floor];
		def pct($p): .latencyDistribution | map(select(.percentage == $p)) | .[0].latency;
		[(map(.rps) | median), (map(pct(50)) | median), (map(pct(99)) | median)] | @tsv
	' "$OUT"/ghz-"$1"-*.json
}

{
	echo
	echo "ghz: recoveryd on loopback, embedded sandbox; median of $GHZ_ROUNDS runs of $GHZ_TOTAL calls, concurrency $GHZ_CONCURRENCY"
	echo "(ratio = ours / baseline: rps below 1 and latency above 1 are slower)"
	read -r base_rps base_p50 base_p99 < <(stats health)
	read -r ours_rps ours_p50 ours_p99 < <(stats assign-repeat)
	awk -v br="$base_rps" -v b5="$base_p50" -v b9="$base_p99" -v orps="$ours_rps" -v o5="$ours_p50" -v o9="$ours_p99" '
		function ms(ns) { return sprintf("%.3fms", ns / 1e6) }
		BEGIN {
			printf "%-34s %9s %10s %10s   %9s %9s %9s\n", "call", "rps", "p50", "p99", "rps ratio", "p50 ratio", "p99 ratio"
			printf "%-34s %9.0f %10s %10s   %9s %9s %9s\n", "Health/Check (baseline)", br, ms(b5), ms(b9), "1.00x", "1.00x", "1.00x"
			printf "%-34s %9.0f %10s %10s   %8.2fx %8.2fx %8.2fx\n", "AssignKey, already assigned (ours)", orps, ms(o5), ms(o9), orps / br, o5 / b5, o9 / b9
		}'
} | tee -a "$OUT/summary.txt"

echo
echo "bench: raw results and this summary are in ${OUT#"$ROOT"/}/"
