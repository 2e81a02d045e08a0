// Command sandboxd runs the Partner Key Service emulator (upstream/sandbox)
// as a standalone HTTP server, so developers, scripts and other languages'
// clients can exercise the upstream contract (docs/upstream-contract.md)
// without CoinCover's sandbox.
//
// Usage:
//
//	sandboxd [--listen 127.0.0.1:8080] [--data-dir DIR] [--tokens-file FILE]
//	         [--max-file-bytes N] [--rate-limit R] [--misbehave MODE]
//	         [--pool-size N] [--log-level info]
//
// Without --tokens-file it accepts the development tokens
// sandbox-partner-token (scope partner-endpoint) and sandbox-no-scope-token
// (no scope) and prints them. Without --data-dir all state is in memory.
// Logs are JSON on stderr (never tokens, never plaintext). SIGINT or
// SIGTERM shut it down gracefully.
package main
