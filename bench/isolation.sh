#!/usr/bin/env bash
# bench/isolation.sh measures how much one caller's load slows another
# caller's SecureData (issue 9 §3): caller B sends a light, paced stream of
# SecureData calls, once alone and once while caller A runs SecureData at
# concurrency 200 plus 50 concurrent SecureFile uploads, alternating, for
# ISO_ROUNDS rounds. The figure is B's p50 and p99 under A's load divided by
# B's alone (1.00: no effect). Then the same again with A held to
# --max-concurrent-calls by its callers-file entry (ISO_CAP, applied with a
# SIGHUP reload), to see what the per-caller cap buys B. First of all, B
# under the same load from A sent straight to sandboxd by bench/load (the
# integrator's own client, no recoveryd): what remains of B's slowdown then
# is the machine's, the cores and the emulator A and B share, a floor no
# admission policy inside recoveryd can go below.
#
# The parts are real: sandboxd (the emulator as an HTTP server, --latency
# ISO_LATENCY as a WAN upstream, --verify-data=false so that its RSA
# decryption, which the real upstream does on its own machines, does not eat
# the cores being measured), recoveryd with a callers file (A and B are two
# authenticated callers), ghz for every call. Everything listens on loopback
# and is bounded: B by --total, A by --duration, every ghz run by
# timeout(1). The script stops only the PIDs it started, on any exit.
#
# Knobs (environment): ISO_ROUNDS (3), ISO_B_TOTAL (200), ISO_B_RPS (20),
# ISO_A_DATA_CONCURRENCY (200), ISO_A_FILE_CONCURRENCY (50), ISO_CAP (16),
# ISO_LATENCY (20ms), ISO_FILE_KIB (64), ISO_SANDBOX_STATE (persisted, or
# memory: sandboxd without a data dir, so that its fsync per store under one
# lock does not queue every caller's stores), BENCH_OUT (bench/out).
# A quick smoke of the script:
#   ISO_ROUNDS=1 ISO_B_TOTAL=20 bench/isolation.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/.bin:$PATH"

ISO_ROUNDS=${ISO_ROUNDS:-3}
ISO_B_TOTAL=${ISO_B_TOTAL:-200}
ISO_B_RPS=${ISO_B_RPS:-20}
ISO_A_DATA_CONCURRENCY=${ISO_A_DATA_CONCURRENCY:-200}
ISO_A_FILE_CONCURRENCY=${ISO_A_FILE_CONCURRENCY:-50}
ISO_CAP=${ISO_CAP:-16}
ISO_LATENCY=${ISO_LATENCY:-20ms}
ISO_FILE_KIB=${ISO_FILE_KIB:-64}
ISO_SANDBOX_STATE=${ISO_SANDBOX_STATE:-persisted}
OUT=${BENCH_OUT:-$ROOT/bench/out}

SERVICE=recovery.v1.RecoveryService
START_SECONDS=60
# B's run takes about ISO_B_TOTAL/ISO_B_RPS seconds (paced, and with enough
# concurrency that a slow call does not hold the next ones back); A starts
# LEAD seconds before it and runs until well after it.
LEAD=3
B_SECONDS=$(((ISO_B_TOTAL + ISO_B_RPS - 1) / ISO_B_RPS))
A_SECONDS=$((B_SECONDS + 2 * LEAD + 10))
# No ghz run may outlast this, whatever happens.
GHZ_MAX_SECONDS=$((A_SECONDS + 60))

fail() {
	echo "isolation: $*" >&2
	exit 1
}

for tool in go ghz grpcurl jq awk timeout sha256sum base64 head; do
	command -v "$tool" >/dev/null || fail "$tool is not on PATH or in .bin/ (run \`make tools\`; jq: \`make system-deps\`)"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/recoveryd-isolation.XXXXXX")
# PIDs this script started and has not reaped yet.
pids=()
cleanup() {
	local status=$?
	for pid in "${pids[@]}"; do
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
# forget drops a reaped PID, so cleanup never signals a reused number.
forget() {
	local keep=() p
	for p in "${pids[@]}"; do
		[[ $p == "$1" ]] || keep+=("$p")
	done
	pids=("${keep[@]}")
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

mkdir -p "$OUT"
rm -f "$OUT"/iso-*.json "$OUT"/isolation.txt

{
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (working tree differs)')"
	echo "go:      $(go env GOVERSION); ghz $(sed -n 's/^GHZ_VERSION *:= *//p' "$ROOT/Makefile") (the Makefile's pin)"
	echo "cpu:     $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown), $(nproc) cores"
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (1, 5, 15 min) at start"
	echo "sandbox: $ISO_SANDBOX_STATE state, --latency $ISO_LATENCY, --verify-data=false"
} | tee "$OUT/isolation.txt"

echo ">> building recoveryd and sandboxd"
(cd "$ROOT" && go build -o "$work/recoveryd" ./cmd/recoveryd && go build -o "$work/sandboxd" ./cmd/sandboxd &&
	go build -o "$work/load" ./bench/load)

# --- sandboxd -------------------------------------------------------------------

sandbox_state=(--data-dir "$work/sandbox")
case $ISO_SANDBOX_STATE in
persisted) ;;
memory) sandbox_state=() ;;
*) fail "ISO_SANDBOX_STATE must be persisted or memory, not $ISO_SANDBOX_STATE" ;;
esac
"$work/sandboxd" --listen 127.0.0.1:0 --test-keys --log-level warn --latency "$ISO_LATENCY" \
	--verify-data=false "${sandbox_state[@]}" >"$work/sandboxd.out" 2>"$work/sandboxd.log" &
pids+=($!)
sandbox_pid=$!
upstream=""
for _ in $(seq $((START_SECONDS * 5))); do
	kill -0 "$sandbox_pid" 2>/dev/null || fail "sandboxd exited during start: $(tail -5 "$work/sandboxd.log")"
	upstream=$(sed -n 's/^sandboxd listening on //p' "$work/sandboxd.out" | head -1)
	[[ -n $upstream ]] && break
	sleep 0.2
done
[[ -n $upstream ]] || fail "sandboxd did not report its address"

# --- recoveryd with two callers ------------------------------------------------------

token_a=$(head -c 32 /dev/urandom | base64 -w0)
token_b=$(head -c 32 /dev/urandom | base64 -w0)
hash_a=$(printf %s "$token_a" | sha256sum | cut -d' ' -f1)
hash_b=$(printf %s "$token_b" | sha256sum | cut -d' ' -f1)
callers="$work/callers.json"
# write_callers CAP: A's entry with max_concurrent_calls CAP (0: no cap);
# written beside the file and moved over it, as a rotation must be.
write_callers() {
	(umask 077 && cat >"$callers.new" <<-EOF
		{"callers": [
		  {"name": "caller-a", "token_sha256": "$hash_a", "organisations": ["*"], "max_concurrent_calls": $1},
		  {"name": "caller-b", "token_sha256": "$hash_b", "organisations": ["*"]}
		]}
	EOF
	)
	mv "$callers.new" "$callers"
}
write_callers 0
printf '%s\n' sandbox-partner-token >"$work/upstream-token"
chmod 600 "$work/upstream-token"

log="$work/recoveryd.log"
"$work/recoveryd" --listen 127.0.0.1:0 --admin-listen= --data-dir "$work/data" \
	--upstream-url "$upstream" --upstream-token-file "$work/upstream-token" --jwks-url "$upstream/.well-known/jwks.json" \
	--caller-tokens-file "$callers" >"$log" 2>&1 &
pids+=($!)
server=$!
addr=""
for _ in $(seq $((START_SECONDS * 5))); do
	kill -0 "$server" 2>/dev/null || fail "recoveryd exited during start: $(tail -5 "$log")"
	addr=$(grep -m1 -o '"msg":"serving gRPC","address":"[^"]*"' "$log" | sed 's/.*"address":"\([^"]*\)"/\1/' || true)
	[[ -n $addr ]] && break
	sleep 0.2
done
[[ -n $addr ]] || fail "recoveryd did not report its address: $(tail -5 "$log")"
serving=""
for _ in $(seq $((START_SECONDS * 5))); do
	serving=$(grpcurl -plaintext -max-time 2 -d "{\"service\":\"$SERVICE\"}" "$addr" grpc.health.v1.Health/Check 2>/dev/null | jq -r '.status // empty' || true)
	[[ $serving == SERVING ]] && break
	sleep 0.2
done
[[ $serving == SERVING ]] || fail "recoveryd at $addr is not SERVING"
echo "   sandboxd $upstream (latency $ISO_LATENCY), recoveryd $addr"

# assign USER TOKEN: a key for USER, its key_id.
assign() {
	grpcurl -plaintext -max-time 30 -H "authorization: Bearer $2" -d "{
		\"user_identifier\": \"$1\", \"key_environment\": \"KEY_ENVIRONMENT_HOT\",
		\"organisation\": {\"customer_id\": \"iso-co\", \"customer_name\": \"Isolation Co\"},
		\"package\": {\"package_id\": \"gold\", \"package_name\": \"Gold\"}}" \
		"$addr" "$SERVICE/AssignKey" | jq -r '.key.keyId // empty'
}
key_a=$(assign user-a "$token_a")
key_b=$(assign user-b "$token_b")
[[ -n $key_a && -n $key_b ]] || fail "AssignKey returned no key: $(tail -5 "$log")"
pub_a=$(grpcurl -plaintext -max-time 30 -H "authorization: Bearer $token_a" -d "{\"key_id\": \"$key_a\"}" \
	"$addr" "$SERVICE/GetKey" | jq -r '.key.publicKeyHex // empty')
[[ -n $pub_a ]] || fail "GetKey returned no public key for A's key"

plaintext=$(printf 'a share of about forty bytes, no more..' | base64 -w0)
data_a="{\"key_id\":\"$key_a\",\"plaintext\":\"$plaintext\"}"
data_b="{\"key_id\":\"$key_b\",\"plaintext\":\"$plaintext\"}"
# A's upload: a header, then 16 KiB chunks (the minimum but for the last).
chunk=$(head -c 16384 /dev/urandom | base64 -w0)
{
	printf '[{"header":{"key_id":"%s","metadata":{"content_type":"application/octet-stream"}}}' "$key_a"
	for _ in $(seq $((ISO_FILE_KIB / 16))); do printf ',{"chunk":"%s"}' "$chunk"; done
	printf ']'
} >"$work/file.json"

# ghz_run REPORT ARGS...: one ghz run, bounded by timeout(1), in the
# background; its PID in $last.
ghz_run() {
	local report=$1
	shift
	timeout --kill-after=5 "$GHZ_MAX_SECONDS" ghz --insecure --format json --timeout 30s "$@" "$addr" >"$report" 2>"$report.err" &
	last=$!
	pids+=("$last")
}
# ghz_wait PID: wait for one of our ghz runs; failure of a ghz run is
# judged from its report, not its exit status.
ghz_wait() {
	wait "$1" 2>/dev/null || true
	forget "$1"
}

# run_b NAME ROUND: B's light stream, paced at ISO_B_RPS.
run_b() {
	local report="$OUT/iso-$1-$2.json"
	ghz_run "$report" --call "$SERVICE/SecureData" -d "$data_b" --metadata "{\"authorization\":\"Bearer $token_b\"}" \
		--total "$ISO_B_TOTAL" --rps "$ISO_B_RPS" --concurrency "$ISO_B_RPS" --connections 1
	ghz_wait "$last"
	jq -e --argjson total "$ISO_B_TOTAL" '(.statusCodeDistribution.OK // 0) == $total' "$report" >/dev/null ||
		fail "B's run $1 (round $2): not every call succeeded: $(jq -c '{count, statusCodeDistribution, errorDistribution}' "$report" 2>/dev/null || cat "$report.err")"
}

# start_a_recoveryd NAME ROUND: A's load through recoveryd (SecureData at
# ISO_A_DATA_CONCURRENCY and ISO_A_FILE_CONCURRENCY uploads), by ghz; the
# PIDs in $a_data and $a_file.
start_a_recoveryd() {
	ghz_run "$OUT/iso-$1-a-data-$2.json" --call "$SERVICE/SecureData" -d "$data_a" \
		--metadata "{\"authorization\":\"Bearer $token_a\"}" --duration "${A_SECONDS}s" \
		--concurrency "$ISO_A_DATA_CONCURRENCY" --connections 4
	a_data=$last
	ghz_run "$OUT/iso-$1-a-file-$2.json" --call "$SERVICE/SecureFile" -D "$work/file.json" \
		--metadata "{\"authorization\":\"Bearer $token_a\"}" --duration "${A_SECONDS}s" \
		--concurrency "$ISO_A_FILE_CONCURRENCY" --connections 1
	a_file=$last
}

# direct_load REPORT ARGS...: bench/load against sandboxd as caller A would
# without recoveryd, bounded by its -max-duration and by timeout(1), in the
# background; its PID in $last.
direct_load() {
	local report=$1
	shift
	timeout --kill-after=5 "$GHZ_MAX_SECONDS" "$work/load" -target "$upstream" -public-key-hex "$pub_a" \
		-n 1000000 -max-duration "${A_SECONDS}s" -timeout 30s "$@" >"$report" 2>"$report.err" &
	last=$!
	pids+=("$last")
}

# start_a_direct NAME ROUND: the same load sent straight to sandboxd.
start_a_direct() {
	direct_load "$OUT/iso-$1-a-data-$2.json" -mode direct-data -c "$ISO_A_DATA_CONCURRENCY"
	a_data=$last
	direct_load "$OUT/iso-$1-a-file-$2.json" -mode direct-file -c "$ISO_A_FILE_CONCURRENCY" -size $((ISO_FILE_KIB * 1024))
	a_file=$last
}

# run_loaded NAME ROUND START: A's load started by START (start_a_recoveryd
# or start_a_direct), B's stream through recoveryd LEAD seconds in.
run_loaded() {
	local a_data a_file
	"$3" "$1" "$2"
	sleep "$LEAD"
	run_b "$1" "$2"
	kill -0 "$a_data" 2>/dev/null || echo "isolation: warning: A's SecureData load ended before B's run did" >&2
	ghz_wait "$a_data"
	ghz_wait "$a_file"
}

# Warm up both callers' paths (connections, caches, the SQLite file).
ISO_B_TOTAL=$((ISO_B_TOTAL < 20 ? ISO_B_TOTAL : 20)) run_b warmup 0

for phase in direct uncapped capped; do
	if [[ $phase == capped ]]; then
		write_callers "$ISO_CAP"
		kill -HUP "$server"
		for _ in $(seq 50); do
			grep -q 'callers file reloaded' "$log" && break
			sleep 0.2
		done
		grep -q 'callers file reloaded' "$log" || fail "recoveryd did not report the callers file reload: $(tail -5 "$log")"
	fi
	echo ">> $phase: $ISO_ROUNDS rounds of B alone, then B under A's load (A: SecureData c=$ISO_A_DATA_CONCURRENCY + $ISO_A_FILE_CONCURRENCY SecureFile uploads of $ISO_FILE_KIB KiB, ${A_SECONDS}s)"
	for round in $(seq "$ISO_ROUNDS"); do
		echo "   round $round/$ISO_ROUNDS"
		run_b "$phase-alone" "$round"
		if [[ $phase == direct ]]; then
			run_loaded "$phase-loaded" "$round" start_a_direct
		else
			run_loaded "$phase-loaded" "$round" start_a_recoveryd
		fi
	done
done

# stats NAME: "p50_ns p99_ns" of B's runs NAME, each the median over rounds.
stats() {
	jq -s -r '
		def median: sort | .[(length - 1) / 2 | floor];
		def pct($p): .latencyDistribution | map(select(.percentage == $p)) | .[0].latency;
		[(map(pct(50)) | median), (map(pct(99)) | median)] | @tsv
	' "$OUT"/iso-"$1"-[0-9]*.json
}
# a_stats NAME: A's calls: "rps ok refused_rate_limited other" summed over
# rounds, from ghz's reports or (the direct phase) bench/load's.
a_stats() {
	if [[ $1 == direct-* ]]; then
		jq -s -r '[(map(.rps) | add / length | floor), (map(.ok) | add), 0, (map(.count - .ok) | add)] | @tsv' "$OUT"/iso-"$1"-*.json
		return
	fi
	jq -s -r '
		[(map(.rps) | add / length | floor),
		 (map(.statusCodeDistribution.OK // 0) | add),
		 (map(.statusCodeDistribution.ResourceExhausted // 0) | add),
		 (map((.count // 0) - (.statusCodeDistribution.OK // 0) - (.statusCodeDistribution.ResourceExhausted // 0)) | add)] | @tsv
	' "$OUT"/iso-"$1"-*.json
}

{
	echo
	echo "B's SecureData (paced at $ISO_B_RPS/s, $ISO_B_TOTAL calls) under caller A's load vs B alone;"
	echo "median of $ISO_ROUNDS alternating rounds; sandboxd latency $ISO_LATENCY; ratio = loaded / alone"
	printf '%-34s %10s %10s %10s %10s %8s %8s\n' "A's limits" "alone p50" "alone p99" "loaded p50" "loaded p99" "p50 x" "p99 x"
	for phase in direct uncapped capped; do
		read -r a50 a99 < <(stats "$phase-alone")
		read -r l50 l99 < <(stats "$phase-loaded")
		case $phase in
		direct) label="A direct to sandboxd (the floor)" ;;
		uncapped) label="none" ;;
		capped) label="max_concurrent_calls $ISO_CAP" ;;
		esac
		awk -v l="$label" -v a50="$a50" -v a99="$a99" -v l50="$l50" -v l99="$l99" 'BEGIN {
			printf "%-34s %8.1fms %8.1fms %8.1fms %8.1fms %7.2fx %7.2fx\n", l, a50/1e6, a99/1e6, l50/1e6, l99/1e6, l50/a50, l99/a99
		}'
	done
	echo
	echo "A's calls during the loaded runs (rps averaged, counts summed over rounds):"
	printf '%-34s %-11s %8s %8s %18s %8s\n' "A's limits" "call" "rps" "OK" "RESOURCE_EXHAUSTED" "other"
	for phase in direct uncapped capped; do
		for kind in data file; do
			read -r rps ok re other < <(a_stats "$phase-loaded-a-$kind")
			printf '%-34s %-11s %8s %8s %18s %8s\n' "$phase" "$([[ $kind == data ]] && echo SecureData || echo SecureFile)" "$rps" "$ok" "$re" "$other"
		done
	done
	echo "load:    $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown) (1, 5, 15 min) at the end"
} | tee -a "$OUT/isolation.txt"
