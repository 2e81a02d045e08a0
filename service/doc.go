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
// Every RPC acts for an organisation, and Config.Authz (an auth.Mode) says
// whether the caller may: AssignKey is authorized on
// organisation.customer_id, SecureData, SecureFile and GetKey on the
// customer of the key they name, before anything is reserved, written or
// sent upstream; ListKeys and ListBackups are narrowed to the caller's
// organisations. The caller's name (auth.CallerName) is recorded with every
// assignment and backup and returned as assigned_by and stored_by.
//
// The package depends only on the narrow interfaces of deps.go; cmd/recoveryd
// builds the real ones and registers a *Server.
package service
