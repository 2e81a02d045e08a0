// Package app assembles recoveryd: it is the one place where the
// configuration, the upstream adapter, the registry and the service handlers
// are wired together and where the server's lifecycle (readiness, health,
// graceful shutdown) is decided. cmd/recoveryd parses flags into a Config
// and calls Run; tests build the same server with Options overrides.
//
// With no configuration it runs the upstream emulator in-process (the
// "embedded sandbox"), trusts that emulator's signing keys, keeps its SQLite
// registry under ./recoveryd-data and listens on 127.0.0.1:50051 with server
// reflection on, so `go run ./cmd/recoveryd` is a working development server.
//
// Callers authenticate with bearer tokens listed (as SHA-256 digests) in
// --caller-tokens-file, reloaded on SIGHUP, and optionally with client
// certificates (--tls-cert, --tls-key, --client-ca); service/auth decides,
// in the interceptor chain's auth position. With --environment production,
// Config.Validate refuses every configuration productionProblems names, one
// line per problem; in development Run prints a banner of what is unsafe.
package app
