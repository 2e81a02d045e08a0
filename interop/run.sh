#!/usr/bin/env bash
# run.sh runs the polyglot callers in interop/ against a real recoveryd in
# front of a real sandboxd, both built from this tree, and fails if any
# client fails, prints no result line, or is missing. `make interop` calls
# it after installing what the clients need (see the Makefile); run alone:
#   interop/run.sh [client ...]      (clients: node python java; default all)
#
# Each client prints one line "N passed, N failed" as its last line and exits
# non-zero on any failure. Both servers listen on free loopback ports and are
# stopped by PID when the script exits, whatever happens.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# The pinned tools (grpcurl) that `make tools` installs into .bin/.
export PATH="$root/.bin:$PATH"
clients=("$@")
[[ ${#clients[@]} -gt 0 ]] || clients=(node python java)

# Bounds: no server or client may hang the build.
readonly start_timeout_s=60
readonly client_timeout_s=300

work=$(mktemp -d "${TMPDIR:-/tmp}/recovery-interop.XXXXXX")
pids=()
cleanup() {
	local pid
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "interop: FAILED: $*" >&2
	exit 1
}

# wait_for_line FILE REGEX waits until FILE has a line matching REGEX and
# prints it; it fails after start_timeout_s or when the server PID died.
wait_for_line() {
	local file=$1 regex=$2 pid=$3 name=$4 line
	for ((i = 0; i < start_timeout_s * 10; i++)); do
		if line=$(grep -m1 -E "$regex" "$file" 2>/dev/null); then
			echo "$line"
			return 0
		fi
		kill -0 "$pid" 2>/dev/null || { tail -n 20 "$work"/*.log >&2; fail "$name exited before it was ready"; }
		sleep 0.1
	done
	tail -n 20 "$work"/*.log >&2
	fail "$name was not ready within ${start_timeout_s}s"
}

for tool in go jq grpcurl; do
	command -v "$tool" >/dev/null || fail "$tool not found (make interop installs what it needs: run it through make)"
done

echo ">> building recoveryd and sandboxd from this tree"
(cd "$root" && go build -o "$work/bin/recoveryd" ./cmd/recoveryd && go build -o "$work/bin/sandboxd" ./cmd/sandboxd)

"$work/bin/sandboxd" --listen 127.0.0.1:0 --log-level warn >"$work/sandboxd.out" 2>"$work/sandboxd.log" &
pids+=($!)
sandbox_url=$(wait_for_line "$work/sandboxd.out" '^sandboxd listening on ' "${pids[-1]}" sandboxd | sed 's/^sandboxd listening on //')

# The emulator's development partner token: a test credential, not a secret.
printf '%s' sandbox-partner-token >"$work/upstream-token"
mkdir -p "$work/recoveryd-data"
"$work/bin/recoveryd" --listen 127.0.0.1:0 --admin-listen= --data-dir "$work/recoveryd-data" \
	--upstream-url "$sandbox_url" --upstream-token-file "$work/upstream-token" \
	--jwks-url "$sandbox_url/.well-known/jwks.json" >"$work/recoveryd.out" 2>"$work/recoveryd.log" &
pids+=($!)
recovery_addr=$(wait_for_line "$work/recoveryd.log" '"msg":"serving gRPC"' "${pids[-1]}" recoveryd | jq -r .address)

# Listening is not ready: health turns SERVING once the registry and the
# upstream answer.
for ((i = 0; ; i++)); do
	if grpcurl -plaintext -max-time 2 "$recovery_addr" grpc.health.v1.Health/Check 2>/dev/null | grep -q '"SERVING"'; then
		break
	fi
	((i < start_timeout_s * 2)) || { tail -n 20 "$work/recoveryd.log" >&2; fail "recoveryd health not SERVING within ${start_timeout_s}s"; }
	sleep 0.5
done
echo ">> recoveryd $recovery_addr (health SERVING) in front of sandboxd $sandbox_url"

export RECOVERY_ADDR=$recovery_addr
export SANDBOX_URL=$sandbox_url
export PROTO_INCLUDE="$root/proto:$root/third_party/protovalidate"
export VECTORS_FILE="$root/keycrypto/testdata/vectors.json"
export SERVICE_CONFIG_FILE="$root/interop/service-config.json"
export PYTHON_STUBS_DIR="$work/python-stubs"

# generate_python_stubs writes the Python stubs of proto/ (and of the
# google.rpc error details) into $PYTHON_STUBS_DIR with Debian's protoc and
# grpc_python_plugin, so they always match the runtime's protobuf. The
# google/rpc protos come from the npm package google-proto-files, which the
# Node client installs anyway (Debian packages no Python googleapis protos).
generate_python_stubs() {
	local out=$PYTHON_STUBS_DIR googleapis="$root/interop/node/node_modules/google-proto-files"
	command -v protoc >/dev/null || fail "protoc not found (apt-get install protobuf-compiler)"
	[[ -x /usr/bin/grpc_python_plugin ]] || fail "grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)"
	[[ -f "$googleapis/google/rpc/status.proto" ]] || fail "google/rpc protos missing: run make interop (npm ci in interop/node)"
	mkdir -p "$out"
	protoc -I "$root/proto" -I "$root/third_party/protovalidate" -I "$googleapis" \
		--python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin \
		recovery/v1/recovery_service.proto recovery/v1/error_reason.proto buf/validate/validate.proto \
		google/rpc/status.proto google/rpc/error_details.proto
}

# client_command NAME prints how to run one client, or fails when it is
# missing: a client that cannot run is a failure, never a skip.
client_command() {
	case $1 in
	node)
		command -v node >/dev/null || fail "node not found"
		[[ -d "$root/interop/node/node_modules" ]] || fail "interop/node/node_modules missing: run make interop (npm ci)"
		echo "node $root/interop/node/client.mjs"
		;;
	python)
		# Debian's interpreter, where python3-grpcio and friends live (a
		# pyenv or venv python3 earlier on PATH would not see them).
		[[ -x /usr/bin/python3 ]] || fail "/usr/bin/python3 not found"
		[[ -f "$root/interop/python/client.py" ]] || fail "interop/python/client.py is missing"
		generate_python_stubs >&2
		echo "/usr/bin/python3 $root/interop/python/client.py"
		;;
	java)
		[[ -f "$root/interop/java/run.sh" ]] || fail "interop/java/run.sh is missing"
		echo "bash $root/interop/java/run.sh"
		;;
	*) fail "unknown client $1 (node, python or java)" ;;
	esac
}

failed=()
for name in "${clients[@]}"; do
	cmd=$(client_command "$name")
	echo ">> $name client"
	export SCRATCH_DIR="$work/scratch-$name"
	mkdir -p "$SCRATCH_DIR"
	rc=0
	# shellcheck disable=SC2086 # cmd is a command line built above
	timeout "$client_timeout_s" $cmd >"$work/$name.out" 2>&1 || rc=$?
	sed "s/^/   [$name] /" "$work/$name.out"
	summary=$(tail -n 1 "$work/$name.out")
	if [[ $rc -ne 0 || ! $summary =~ ^([0-9]+)\ passed,\ ([0-9]+)\ failed$ ]] ||
		[[ ${BASH_REMATCH[1]} -eq 0 || ${BASH_REMATCH[2]} -ne 0 ]]; then
		failed+=("$name (exit $rc)")
	fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
	echo ">> recoveryd log (last 30 lines):" >&2
	tail -n 30 "$work/recoveryd.log" >&2
	fail "clients failed: ${failed[*]}"
fi
echo ">> interop: every client passed (${clients[*]})"
