#!/usr/bin/env bash
# bench/pairs.sh measures recoveryd against the client a wallet provider
# would write without it (bench/load, mode direct-*), both calling the same
# standalone sandboxd, back to back, PAIR_ROUNDS rounds interleaved (the
# order alternates per round), and prints one table: figure, direct,
# recoveryd, ratio (issue 12). `make bench` runs it after bench/run.sh.
#
# Scenarios, each on a fresh sandboxd (--verify-data=false, persisted in a
# temp dir) and a fresh recoveryd (--upstream-url at it, SQLite unless said):
#   data      SecureData, plaintext mode, c=20: ghz vs direct-data
#   data-pg   the same with recoveryd on PostgreSQL (initdb in a temp dir)
#   latency   SecureData with sandboxd --latency 50ms, c=256
#   file      SecureFile 10 MiB, c=4: bench/load grpc-file vs direct-file
#   mem16     16 concurrent 10 MiB SecureFile streams: recoveryd's VmHWM
#   mem64     64 concurrent 10 MiB streams, sandboxd --latency 50ms
#   assign    ghz AssignKey (already assigned) vs Health/Check, c=4
# After each recoveryd run: its goroutines (admin /metrics) and its TCP
# connections to sandboxd: established after the run, and how many were
# seen during it (sampled every 0.2 s; more than the concurrency means
# connections were closed and reopened rather than reused).
# The SecureData and AssignKey scenarios run sandboxd in memory: persisted,
# its store fsyncs each commit under one lock, and both sides would measure
# that (about 150-250 stores/s here) rather than recoveryd. The file
# scenarios persist it (the contents go to disk, not memory).
#
# Knobs: PAIR_ROUNDS (3), PAIR_SCENARIOS (all of the above), DATA_TOTAL
# (2000), LATENCY_TOTAL (2560), FILE_TOTAL (40), ASSIGN_TOTAL (5000),
# PAIR_MAX_SECONDS (180, the bound of each run), BENCH_OUT (bench/out),
# RECOVERYD_BIN (another recoveryd binary to measure, e.g. a build of the
# commit before a change), RECOVERYD_GOMEMLIMIT (recoveryd's GOMEMLIMIT;
# unset by default), PAIR_PROFILE (seconds: start recoveryd with
# --admin-pprof and take a CPU profile of that length at the start of each
# measured recoveryd run, into $BENCH_OUT/profile-NAME.pb.gz; unset, none),
# FILE_CHUNK_BYTES (1 MiB: the SecureFile chunk the clients send, 16 KiB to
# 1 MiB; recoveryd's memory per upload follows it).
# Every report also has each process's CPU per call (cpu_ms_per_call: the
# client, recoveryd, sandboxd), from /proc and the shell's child times;
# the client's includes its start-up, so small totals overstate it.
# Smoke: PAIR_ROUNDS=1 DATA_TOTAL=100 LATENCY_TOTAL=256 FILE_TOTAL=4 ASSIGN_TOTAL=200 bench/pairs.sh
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
export PATH="$ROOT/.bin:$PATH"

PAIR_ROUNDS=${PAIR_ROUNDS:-3}
PAIR_SCENARIOS=${PAIR_SCENARIOS:-data data-pg latency file mem16 mem64 assign}
DATA_TOTAL=${DATA_TOTAL:-2000}
LATENCY_TOTAL=${LATENCY_TOTAL:-2560}
FILE_TOTAL=${FILE_TOTAL:-40}
ASSIGN_TOTAL=${ASSIGN_TOTAL:-5000}
PAIR_MAX_SECONDS=${PAIR_MAX_SECONDS:-180}
PAIR_PROFILE=${PAIR_PROFILE:-}
OUT=${BENCH_OUT:-$ROOT/bench/out}
SERVICE=recovery.v1.RecoveryService
TOKEN=sandbox-partner-token
START_SECONDS=60
FILE_BYTES=$((10 << 20))
FILE_CHUNK_BYTES=${FILE_CHUNK_BYTES:-$((1 << 20))}

fail() {
	echo "bench/pairs: $*" >&2
	exit 1
}
for tool in go ghz grpcurl jq awk timeout ss curl; do
	command -v "$tool" >/dev/null || fail "$tool is not on PATH or in .bin/"
done

work=$(mktemp -d "${TMPDIR:-/tmp}/recoveryd-pairs.XXXXXX")
chmod 0755 "$work" # PostgreSQL's user must reach its directory
sandbox="" server="" current="" pgdata=""
stop() {
	[[ -n $1 ]] || return 0
	kill -TERM "$1" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.2
	done
	kill -KILL "$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}
stop_pg() {
	[[ -n $pgdata ]] || return 0
	pg_as "$pgbin/pg_ctl" stop -D "$pgdata" -m fast -w >/dev/null 2>&1 || true
	pgdata=""
}
cleanup() {
	local status=$?
	for pid in $sampler $current $server $sandbox; do stop "$pid"; done
	stop_pg
	rm -rf "$work"
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tracked() {
	local status=0
	"$@" &
	current=$!
	wait "$current" || status=$?
	current=""
	return "$status"
}

mkdir -p "$OUT"
rm -f "$OUT"/pair-*.json "$OUT"/pairs.txt "$OUT"/pairs-*.log
echo ">> building recoveryd, sandboxd and bench/load"
(cd "$ROOT" && go build -o "$work/recoveryd" ./cmd/recoveryd && go build -o "$work/sandboxd" ./cmd/sandboxd &&
	go build -o "$work/load" ./bench/load)
if [[ -n ${RECOVERYD_BIN:-} ]]; then
	cp "$RECOVERYD_BIN" "$work/recoveryd" # another build of recoveryd, for a before/after comparison
fi
printf '%s\n' "$TOKEN" >"$work/token"
chmod 0600 "$work/token"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_sandbox memory|disk ARGS...: a fresh sandboxd, its state in memory
# or in a fresh data dir.
start_sandbox() {
	local -a dir=()
	[[ $1 == disk ]] && dir=(--data-dir "$work/sandbox-data")
	shift
	sport=$(free_port)
	rm -rf "$work/sandbox-data"
	"$work/sandboxd" --listen "127.0.0.1:$sport" "${dir[@]}" --verify-data=false \
		--log-level warn "$@" >"$OUT/pairs-sandboxd.log" 2>&1 &
	sandbox=$!
	for _ in $(seq $((START_SECONDS * 5))); do
		curl -fsS -o /dev/null "http://127.0.0.1:$sport/healthz" 2>/dev/null && return 0
		kill -0 "$sandbox" 2>/dev/null || fail "sandboxd exited: $(tail -5 "$OUT/pairs-sandboxd.log")"
		sleep 0.2
	done
	fail "sandboxd did not answer /healthz"
}

# start_recoveryd ARGS...: a fresh recoveryd on sandboxd; sets addr, admin.
start_recoveryd() {
	rm -rf "$work/data"
	log="$OUT/pairs-recoveryd.log"
	env ${RECOVERYD_GOMEMLIMIT:+GOMEMLIMIT=$RECOVERYD_GOMEMLIMIT} "$work/recoveryd" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$work/data" --log-level warn \
		--upstream-url "http://127.0.0.1:$sport" --upstream-token-file "$work/token" \
		--jwks-url "http://127.0.0.1:$sport/.well-known/jwks.json" ${PAIR_PROFILE:+--admin-pprof} "$@" >"$log" 2>&1 &
	server=$!
	addr="" admin=""
	# The addresses are logged at info; warn hides them, so ask the kernel.
	for _ in $(seq $((START_SECONDS * 5))); do
		kill -0 "$server" 2>/dev/null || fail "recoveryd exited: $(tail -5 "$log")"
		mapfile -t ports < <(ss -Hltnp | awk -v p="pid=$server," 'index($0, p) { n = split($4, a, ":"); print a[n] }' | sort -n)
		if [[ ${#ports[@]} -ge 2 ]]; then
			for p in "${ports[@]}"; do
				if curl -fsS -o /dev/null "http://127.0.0.1:$p/healthz" 2>/dev/null; then admin=127.0.0.1:$p; else addr=127.0.0.1:$p; fi
			done
			[[ -n $addr && -n $admin ]] && break
		fi
		sleep 0.2
	done
	[[ -n $addr && -n $admin ]] || fail "recoveryd did not listen"
	for _ in $(seq $((START_SECONDS * 5))); do
		[[ $(grpcurl -plaintext -max-time 2 -d "{\"service\":\"$SERVICE\"}" "$addr" grpc.health.v1.Health/Check 2>/dev/null | jq -r .status) == SERVING ]] && break
		sleep 0.2
	done
	local req='{"user_identifier":"bench-user","key_environment":"KEY_ENVIRONMENT_HOT","organisation":{"customer_id":"bench-co","customer_name":"Bench Co"},"package":{"package_id":"gold","package_name":"Gold"}}'
	assign_request=$req
	local key
	key=$(grpcurl -plaintext -max-time 60 -d "$req" "$addr" "$SERVICE/AssignKey")
	key_id=$(jq -r .key.keyId <<<"$key")
	key_hex=$(jq -r .key.publicKeyHex <<<"$key")
	[[ -n $key_id && $key_id != null ]] || fail "AssignKey returned no key"
}

stop_all() {
	stop "$server"
	server=""
	stop "$sandbox"
	sandbox=""
	stop_pg
}

# wait_idle PID: until PID used under 5% of a core for a second (sandboxd
# refills its RSA key pool after an assignment).
wait_idle() {
	local prev now hz
	hz=$(getconf CLK_TCK)
	prev=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
	for _ in $(seq "$START_SECONDS"); do
		sleep 1
		now=$(awk '{ print $14 + $15 }' "/proc/$1/stat")
		((now - prev <= hz / 20)) && return 0
		prev=$now
	done
	echo "bench/pairs: warning: pid $1 still busy; measuring anyway" >&2
}

# PostgreSQL as its own user (it refuses to run as root).
pg_as() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }
start_pg() {
	pgbin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
	pgdata="$work/pg"
	mkdir -p "$pgdata"
	[[ $(id -u) != 0 ]] || chown postgres "$pgdata"
	pg_as "$pgbin/initdb" -D "$pgdata" -U postgres -A trust -E UTF8 --locale=C >/dev/null
	pgport=$(free_port)
	pg_as "$pgbin/pg_ctl" start -D "$pgdata" -w -l "$pgdata/log" -o "-h 127.0.0.1 -p $pgport -k $pgdata -c max_connections=200" >/dev/null
	pg_as "$pgbin/psql" -h 127.0.0.1 -p "$pgport" -U postgres -qc 'CREATE DATABASE recovery' >/dev/null
}

# recoveryd's connections to sandboxd: every 0.2 s of a run, the local
# ports of its established ones; a port seen once is a connection opened.
sampler=""
upstream_ports() {
	ss -Htnp state established "( dport = :$sport )" | awk -v p="pid=$server," 'index($0, p) { print $3 }'
}
start_sampler() {
	: >"$work/ports"
	(while :; do upstream_ports >>"$work/ports"; sleep 0.2; done) &
	sampler=$!
}
# stats_after NAME: goroutines and upstream connections after a recoveryd run.
stats_after() {
	stop "$sampler"
	sampler=""
	sleep 1
	local g est seen
	g=$(curl -fsS "http://$admin/metrics" | awk '$1 ~ /^go_goroutine(s|_count)($|[{])/ && !seen++ { print $2 }')
	est=$(upstream_ports | wc -l)
	seen=$(sort -u "$work/ports" | wc -l)
	printf '%s\t%s\t%s\t%s\n' "$1" "$g" "$est" "$seen" >>"$work/conns.tsv"
}

# CPU per call: a process's utime+stime in clock ticks; the shell's
# waited-for children's user+sys seconds (the client of a run).
proc_ticks() { if [[ -n $1 ]]; then awk '{ print $14 + $15 }' "/proc/$1/stat"; else echo 0; fi; }
# NOTE: times must run in this shell, not in a $(...) subshell, whose
# children are not the run's.
child_seconds() {
	times >"$work/times"
	awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$work/times"
}
# cpu_mark VAR: the CPU used so far by the run's client, recoveryd and
# sandboxd, into the array VAR; taken right before and right after a run,
# so that what the script itself runs (jq, curl) is not counted.
cpu_mark() {
	child_seconds >"$work/cpu"
	local -n into=$1
	into=("$(cat "$work/cpu")" "$(proc_ticks "$server")" "$(proc_ticks "$sandbox")")
}
# cpu_write REPORT CALLS: adds cpu_ms_per_call, from cpu0 to cpu1, to the report.
cpu_write() {
	jq --argjson c "${cpu1[0]}" --argjson r "${cpu1[1]}" --argjson s "${cpu1[2]}" \
		--argjson c0 "${cpu0[0]}" --argjson r0 "${cpu0[1]}" --argjson s0 "${cpu0[2]}" --argjson hz "$(getconf CLK_TCK)" --argjson n "$2" \
		'. + {cpu_ms_per_call: {client: (($c - $c0) * 1000 / $n), recoveryd: (($r - $r0) * 1000 / $hz / $n), sandboxd: (($s - $s0) * 1000 / $hz / $n)}}' \
		"$1" >"$1.tmp" && mv "$1.tmp" "$1"
}
# profile_start NAME: with PAIR_PROFILE, a CPU profile of recoveryd taken
# in the background while the run goes on; profile_wait collects it.
profiler=""
profile_start() {
	[[ -n $PAIR_PROFILE && $1 != *warm* ]] || return 0
	curl -fsS -o "$OUT/profile-$1.pb.gz" "http://$admin/debug/pprof/profile?seconds=$PAIR_PROFILE" &
	profiler=$!
}
profile_wait() {
	[[ -n $profiler ]] || return 0
	wait "$profiler" || echo "bench/pairs: warning: no profile for $1 (did the run end first?)" >&2
	profiler=""
}

ghz_run() { # NAME CONCURRENCY TOTAL CALL DATA
	local report="$OUT/pair-$1.json"
	start_sampler
	profile_start "$1"
	cpu_mark cpu0
	tracked timeout --kill-after=5 "$PAIR_MAX_SECONDS" ghz --insecure --call "$4" -d "$5" --total "$3" \
		--concurrency "$2" --connections $((($2 + 255) / 256)) --timeout 60s --format json "$addr" >"$report" ||
		fail "ghz $1 failed or ran past ${PAIR_MAX_SECONDS}s"
	cpu_mark cpu1
	jq '{rps, p50_ns: (.latencyDistribution[] | select(.percentage == 50) | .latency), p99_ns: (.latencyDistribution[] | select(.percentage == 99) | .latency), count, ok: (.statusCodeDistribution.OK // 0), errors: .errorDistribution}' \
		"$report" >"$report.tmp" && mv "$report.tmp" "$report"
	cpu_write "$report" "$3"
	profile_wait "$1"
	stats_after "$1"
}
load_run() { # NAME MODE CONCURRENCY TOTAL
	local report="$OUT/pair-$1.json" target="http://127.0.0.1:$sport"
	[[ $2 == grpc-* ]] && { target=$addr; start_sampler; profile_start "$1"; }
	cpu_mark cpu0
	tracked timeout --kill-after=5 "$PAIR_MAX_SECONDS" "$work/load" -mode "$2" -target "$target" -c "$3" -n "$4" \
		-public-key-hex "$key_hex" -key-id "$key_id" -size "$FILE_BYTES" -chunk-bytes "$FILE_CHUNK_BYTES" -max-duration "${PAIR_MAX_SECONDS}s" >"$report" ||
		fail "load $1 failed: $(cat "$report")"
	cpu_mark cpu1
	cpu_write "$report" "$4"
	[[ $2 == grpc-* ]] && { profile_wait "$1"; stats_after "$1"; }
	return 0
}

# pair SCENARIO ROUND DIRECT-CMD... -- OURS-CMD...: run both, order alternating.
pair() {
	local round=$1
	shift
	local -a direct=() ours=()
	while [[ $1 != -- ]]; do direct+=("$1"); shift; done
	shift
	ours=("$@")
	if ((round % 2)); then "${direct[@]}"; "${ours[@]}"; else "${ours[@]}"; "${direct[@]}"; fi
}

plaintext_b64=$(printf 's%.0s' $(seq 64) | base64 -w0)
data_request() { echo "{\"key_id\":\"$key_id\",\"plaintext\":\"$plaintext_b64\",\"metadata\":{\"description\":\"bench\"}}"; }

vmhwm() { awk '/^VmHWM/ { print $2 }' "/proc/$server/status"; }

{
	echo "date:    $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "commit:  $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD -- 2>/dev/null || echo ' (working tree differs)')"
	echo "recoveryd: ${RECOVERYD_BIN:-built from this tree}${RECOVERYD_GOMEMLIMIT:+, GOMEMLIMIT=$RECOVERYD_GOMEMLIMIT}"
	echo "files:   $((FILE_BYTES >> 20)) MiB in $((FILE_CHUNK_BYTES >> 10)) KiB chunks"
	echo "cpu:     $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg) at start"
} | tee "$OUT/pairs.txt"
: >"$work/conns.tsv"
: >"$work/mem.tsv"

for scenario in $PAIR_SCENARIOS; do
	echo ">> $scenario"
	case $scenario in
	data | data-pg)
		start_sandbox memory
		if [[ $scenario == data-pg ]]; then
			start_pg
			start_recoveryd --database-url "postgres://postgres@127.0.0.1:$pgport/recovery?sslmode=disable"
		else
			start_recoveryd
		fi
		wait_idle "$sandbox"
		load_run "$scenario-warm-direct" direct-data 20 200
		ghz_run "$scenario-warm-ours" 20 200 "$SERVICE/SecureData" "$(data_request)"
		for r in $(seq "$PAIR_ROUNDS"); do
			pair "$r" load_run "$scenario-direct-$r" direct-data 20 "$DATA_TOTAL" -- \
				ghz_run "$scenario-ours-$r" 20 "$DATA_TOTAL" "$SERVICE/SecureData" "$(data_request)"
		done
		if [[ $scenario == data ]]; then
			# The machine's RSA-4096 OAEP floor, under the same load: one
			# rsa.EncryptOAEP of a 446-byte plaintext (keycrypto's baseline).
			(cd "$ROOT" && go test -run '^$' -bench 'BenchmarkEncrypt/impl=baseline' -benchtime 300x ./keycrypto) |
				awk '/^BenchmarkEncrypt/ { print $3; exit }' >"$work/oaep_ns"
		fi
		;;
	latency)
		start_sandbox memory --latency 50ms
		start_recoveryd
		wait_idle "$sandbox"
		load_run latency-warm-direct direct-data 256 512
		ghz_run latency-warm-ours 256 512 "$SERVICE/SecureData" "$(data_request)"
		for r in $(seq "$PAIR_ROUNDS"); do
			pair "$r" load_run "latency-direct-$r" direct-data 256 "$LATENCY_TOTAL" -- \
				ghz_run "latency-ours-$r" 256 "$LATENCY_TOTAL" "$SERVICE/SecureData" "$(data_request)"
		done
		;;
	file)
		start_sandbox disk
		start_recoveryd
		wait_idle "$sandbox"
		for r in $(seq "$PAIR_ROUNDS"); do
			pair "$r" load_run "file-direct-$r" direct-file 4 "$FILE_TOTAL" -- load_run "file-ours-$r" grpc-file 4 "$FILE_TOTAL"
		done
		;;
	mem16 | mem64)
		n=${scenario#mem}
		if [[ $n == 64 ]]; then start_sandbox disk --latency 50ms; else start_sandbox disk; fi
		start_recoveryd
		wait_idle "$sandbox"
		for r in $(seq "$PAIR_ROUNDS"); do
			echo 5 >"/proc/$server/clear_refs" # resets VmHWM to the current RSS
			before=$(vmhwm)
			load_run "$scenario-ours-$r" grpc-file "$n" "$n"
			printf '%s\t%s\t%s\n' "$scenario-$r" "$before" "$(vmhwm)" >>"$work/mem.tsv"
		done
		;;
	assign)
		start_sandbox memory
		start_recoveryd
		wait_idle "$sandbox"
		ghz_run assign-warm-base 4 500 grpc.health.v1.Health/Check "{\"service\":\"$SERVICE\"}"
		ghz_run assign-warm-ours 4 500 "$SERVICE/AssignKey" "$assign_request"
		for r in $(seq "$PAIR_ROUNDS"); do
			pair "$r" ghz_run "assign-direct-$r" 4 "$ASSIGN_TOTAL" grpc.health.v1.Health/Check "{\"service\":\"$SERVICE\"}" -- \
				ghz_run "assign-ours-$r" 4 "$ASSIGN_TOTAL" "$SERVICE/AssignKey" "$assign_request"
		done
		;;
	*) fail "unknown scenario $scenario" ;;
	esac
	stop_all
done

# median FIELD FILES...: the median of a report field over the rounds.
median() {
	local field=$1
	shift
	jq -s -r --arg f "$field" 'map(.[$f]) | sort | .[(length - 1) / 2 | floor]' "$@"
}
{
	echo
	echo "Pairs against one sandboxd (--verify-data=false), median of $PAIR_ROUNDS interleaved rounds;"
	echo "ratio = recoveryd / direct (throughput: above 1 is faster; p99: above 1 is slower)."
	printf '%-44s %14s %14s %8s\n' figure direct recoveryd ratio
	row() { # LABEL DIRECT OURS [SCALE UNIT]
		awk -v l="$1" -v d="$2" -v o="$3" -v s="${4:-1}" -v u="${5:-}" \
			'BEGIN { printf "%-44s %13.1f%s %13.1f%s %7.2fx\n", l, d / s, u, o / s, u, (d > 0 ? o / d : 0) }'
	}
	# cpu_row SCENARIO LABEL: median CPU ms per call of each process, each side.
	cpu_row() {
		local side who
		for side in direct ours; do
			printf '  %s, %s: CPU ms per call:' "${2% rps}" "$([[ $side == direct ]] && echo direct || echo recoveryd)"
			for who in client recoveryd sandboxd; do
				printf ' %s %.3f' "$who" "$(jq -s "map(.cpu_ms_per_call.$who) | sort | .[(length - 1) / 2 | floor]" "$OUT"/pair-$1-$side-*.json)"
			done
			echo
		done
	}
	for s in data data-pg latency; do
		ls "$OUT"/pair-$s-ours-*.json >/dev/null 2>&1 || continue
		label="SecureData c=20 rps"
		[[ $s == data-pg ]] && label="SecureData c=20 PostgreSQL rps"
		[[ $s == latency ]] && label="SecureData 50ms c=256 rps"
		row "$label" "$(median rps "$OUT"/pair-$s-direct-*.json)" "$(median rps "$OUT"/pair-$s-ours-*.json)"
		[[ $s == latency ]] && row "SecureData 50ms c=256 p99" "$(median p99_ns "$OUT"/pair-$s-direct-*.json)" "$(median p99_ns "$OUT"/pair-$s-ours-*.json)" 1e6 ms
		cpu_row "$s" "$label"
		errs=$(jq -s '[.[] | .count - .ok] | add' "$OUT"/pair-$s-ours-*.json "$OUT"/pair-$s-direct-*.json)
		echo "  $s: failed calls, both sides, all rounds: $errs"
	done
	if [[ -s $work/oaep_ns ]]; then
		awk -v ns="$(cat "$work/oaep_ns")" -v cores="$(nproc)" -v d="$(median rps "$OUT"/pair-data-direct-*.json)" -v o="$(median rps "$OUT"/pair-data-ours-*.json)" 'BEGIN {
			floor = cores / (ns / 1e9)
			printf "RSA-4096 OAEP floor: %d cores / %.0f us per rsa.EncryptOAEP = %.0f/s; SecureData c=20 reaches %.2f of it direct, %.2f through recoveryd\n", cores, ns / 1e3, floor, d / floor, o / floor
		}'
	fi
	if ls "$OUT"/pair-file-ours-*.json >/dev/null 2>&1; then
		row "SecureFile 10 MiB c=4 MB/s" "$(median bytes_per_sec "$OUT"/pair-file-direct-*.json)" "$(median bytes_per_sec "$OUT"/pair-file-ours-*.json)" 1e6
		cpu_row file "SecureFile 10 MiB c=4"
	fi
	if ls "$OUT"/pair-assign-ours-*.json >/dev/null 2>&1; then
		row "AssignKey repeat vs Health/Check c=4 rps" "$(median rps "$OUT"/pair-assign-direct-*.json)" "$(median rps "$OUT"/pair-assign-ours-*.json)"
		cpu_row assign "AssignKey repeat vs Health/Check c=4"
	fi
	if [[ -s $work/mem.tsv ]]; then
		echo
		echo "recoveryd peak RSS (VmHWM, reset before each run), MiB: run, before, peak"
		awk -F'\t' '{ printf "  %-12s %8.1f %8.1f\n", $1, $2 / 1024, $3 / 1024 }' "$work/mem.tsv"
	fi
	echo
	echo "after each recoveryd run: goroutines; its TCP connections to sandboxd: established after, seen during the run"
	awk -F'\t' '$1 !~ /warm/ { printf "  %-20s %6s %6s %6s\n", $1, $2, $3, $4 }' "$work/conns.tsv"
} | tee -a "$OUT/pairs.txt"
echo "bench/pairs: raw reports in ${OUT#"$ROOT"/}/pair-*.json, this table in ${OUT#"$ROOT"/}/pairs.txt"
