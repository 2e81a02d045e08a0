// Command recoveryd serves the RecoveryService over gRPC: it is the one place
// where the configuration, the upstream adapter, the registry and the service
// handlers are wired together and where the server's lifecycle (readiness,
// health, graceful shutdown) is decided.
//
// With no configuration it runs the upstream emulator in-process (the
// "embedded sandbox"), trusts that emulator's signing keys, keeps its SQLite
// registry under ./recoveryd-data and listens on 127.0.0.1:50051 with server
// reflection on, so `go run ./cmd/recoveryd` is a working development server.
// Flags have RECOVERY_* environment fallbacks; `recoveryd -help` lists them.
package main
