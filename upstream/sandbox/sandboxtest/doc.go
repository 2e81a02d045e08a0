// Package sandboxtest gives tests a real Partner Key Service emulator: Start
// serves upstream/sandbox behind a loopback httptest server for one test,
// with the committed test keys (so no RSA-4096 key is generated) and its log
// in a LogBuffer the test can search.
//
// It is test support only: production code never imports it (a test of this
// package enforces that). It exists so that every package that tests
// against the emulator starts it the same way and reads its inspection
// endpoints (/sandbox/v1/...) through one typed Client, whose types are the
// ones the handler writes (sandbox.InspectedKey, sandbox.InspectedBackup,
// sandbox.Recovered), instead of each keeping its own copy of the harness
// and of the wire format.
//
// LogBuffer is also the one concurrency-safe log sink for tests that need
// to see what a server logged (and that secrets never were), whether the
// writer is the emulator, sandboxd or another server under test.
package sandboxtest
