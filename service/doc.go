// Package service implements recovery.v1.RecoveryService: it turns each RPC
// into one flow over the Partner Key Service adapter (upstream), the shared
// crypto (keycrypto) and the durable registry, so that every internal caller
// gets the same exactly-once key assignment, signature verification,
// encryption and backup record without re-implementing them.
//
// Handlers are thin: they convert the request (convert.go), run a flow and
// convert the result back. Every error leaves through statusFromError
// (errors.go), the single place where typed errors of upstream, registry,
// keycrypto and this package become gRPC statuses with google.rpc details.
//
// The package depends only on the narrow interfaces of deps.go; cmd/recoveryd
// builds the real ones and registers a *Server.
package service
