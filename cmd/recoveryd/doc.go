// Command recoveryd serves the RecoveryService over gRPC. This package holds
// only main and flag parsing: flags (with RECOVERY_* environment fallbacks;
// `recoveryd -help` lists them) become an app.Config, which is validated and
// run by package app, where the server is assembled.
//
// Exit codes: 0 after a clean shutdown (SIGTERM, SIGINT), 1 when the server
// failed, 2 when the configuration is wrong and nothing was started.
package main
