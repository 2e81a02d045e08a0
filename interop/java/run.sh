#!/usr/bin/env bash
# run.sh builds and runs the Java client (Client.java) for interop/run.sh:
# stubs generated from proto/ by Debian's protoc and grpc-java plugin,
# compiled with the JDK against Debian's grpc-java jars, then run. Needs the
# environment interop/run.sh exports (SCRATCH_DIR for the build, …).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
googleapis="$root/interop/node/node_modules/google-proto-files"

fail() {
	echo "java client: $*" >&2
	exit 1
}
command -v javac >/dev/null || fail "javac not found (a JDK 17 is needed)"
command -v protoc >/dev/null || fail "protoc not found (apt-get install protobuf-compiler)"
[[ -x /usr/bin/grpc_java_plugin ]] || fail "grpc_java_plugin not found (apt-get install protobuf-compiler-grpc-java-plugin)"
[[ -f "$googleapis/google/rpc/status.proto" ]] || fail "google/rpc protos missing: run make interop (npm ci in interop/node)"

# Debian's jars: grpc-java and what it needs at run time (Debian's
# libgrpc-java does not declare netty, guava or perfmark as dependencies).
jars=(grpc-api grpc-context grpc-core grpc-netty grpc-protobuf grpc-protobuf-lite grpc-stub
	protobuf guava perfmark-api gson jsr305 geronimo-annotation-1.3-spec
	netty-buffer netty-codec netty-codec-http netty-codec-http2 netty-codec-socks netty-common netty-handler
	netty-handler-proxy netty-resolver netty-transport netty-transport-native-unix-common)
cp=""
for jar in "${jars[@]}"; do
	[[ -f /usr/share/java/$jar.jar ]] || fail "/usr/share/java/$jar.jar missing (make interop-deps installs the Debian packages)"
	cp+="/usr/share/java/$jar.jar:"
done

build="${SCRATCH_DIR:?SCRATCH_DIR is not set (run it through make interop)}/java-build"
mkdir -p "$build/src" "$build/classes"
protoc -I "$root/proto" -I "$root/third_party/protovalidate" -I "$googleapis" \
	--java_out="$build/src" --grpc-java_out="$build/src" --plugin=protoc-gen-grpc-java=/usr/bin/grpc_java_plugin \
	recovery/v1/recovery_service.proto recovery/v1/error_reason.proto buf/validate/validate.proto \
	google/rpc/status.proto google/rpc/error_details.proto
# -nowarn: the generated code's deprecation notes are not ours to fix.
javac -nowarn -d "$build/classes" -cp "$cp" $(find "$build/src" -name '*.java') "$here/Client.java" 2>&1 | grep -v '^Note: ' >&2 || true
[[ -f "$build/classes/Client.class" ]] || fail "Client.java did not compile"
exec java -cp "$build/classes:$cp" Client
