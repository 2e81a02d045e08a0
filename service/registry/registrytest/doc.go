// Package registrytest gives tests a real PostgreSQL database for the
// registry: each call to Postgres returns the URL of a fresh, isolated schema
// on a server started once per test binary from Debian's PostgreSQL binaries.
//
// It is test support only: production code never imports it (a test of this
// package enforces that). It exists so that the registry's own tests and the
// tests that run recoveryd replicas on a shared database start the server
// the same way, instead of each keeping its own copy.
//
// The server runs as the test binary's child in a temporary directory, as
// the postgres system user when the tests run as root (PostgreSQL refuses
// root), tuned for a fast start rather than durability. A TestMain that uses
// Postgres wraps its tests with StopAfter so a normal end stops the server
// and removes its directory; a test binary killed by a timeout or a panic
// takes the server with it (a parent-death signal). RECOVERY_TEST_POSTGRES_URL
// names an existing server to use instead.
//
// A machine without the server binaries fails the test loudly, saying what
// to install: code that runs on PostgreSQL is never silently skipped.
package registrytest
