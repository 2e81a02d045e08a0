package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/walletprovider/recoveryservice/service/auth"
)

// maxDatabaseURLFileBytes bounds --database-url-file: one connection URL.
const maxDatabaseURLFileBytes = 16 << 10

// readDatabaseURLFile reads the PostgreSQL URL of --database-url-file: the
// file's one line, surrounding whitespace ignored. Its errors name the file,
// never its content, which holds a password.
func readDatabaseURLFile(path string) (string, error) {
	if err := checkReadable("--database-url-file", path); err != nil {
		return "", err
	}
	f, err := os.Open(path) //nolint:gosec // the path is operator configuration.
	if err != nil {
		return "", fmt.Errorf("--database-url-file %s cannot be opened: %w", path, errors.Unwrap(err))
	}
	defer f.Close() // read-only: a failed close loses nothing
	data, err := io.ReadAll(io.LimitReader(f, maxDatabaseURLFileBytes+1))
	if err != nil {
		return "", fmt.Errorf("--database-url-file %s cannot be read: %w", path, errors.Unwrap(err))
	}
	if len(data) > maxDatabaseURLFileBytes {
		return "", fmt.Errorf("--database-url-file %s is larger than %d bytes: it should hold one postgres:// URL", path, maxDatabaseURLFileBytes)
	}
	line := string(bytes.TrimSpace(data))
	switch {
	case line == "":
		return "", fmt.Errorf("--database-url-file %s is empty: write one postgres://user:password@host/db?sslmode=verify-full URL in it", path)
	case strings.ContainsAny(line, "\r\n"):
		return "", fmt.Errorf("--database-url-file %s holds more than one line: write one postgres:// URL in it", path)
	}
	return line, nil
}

// databaseURL is the PostgreSQL URL recoveryd connects to: --database-url,
// or the content of --database-url-file; "" is SQLite. It may hold a
// password: print it only through redactDatabaseURL.
func (c Config) databaseURL() (string, error) {
	if c.DatabaseURLFile != "" {
		return readDatabaseURLFile(c.DatabaseURLFile)
	}
	return c.DatabaseURL, nil
}

// databaseProblems checks --database-url and --database-url-file, in every
// environment: one of them at most, a postgres:// URL. flag names where the
// URL came from in the production guard's messages.
func (c Config) databaseProblems() []error {
	if c.DatabaseURL != "" && c.DatabaseURLFile != "" {
		return []error{errors.New("set only one of --database-url and --database-url-file (the file for a URL with a password)")}
	}
	raw, err := c.databaseURL()
	if err != nil {
		return []error{err}
	}
	if raw == "" {
		return nil
	}
	if _, err := databaseScheme(raw); err != nil {
		if c.DatabaseURLFile != "" {
			// NOTE: databaseScheme never quotes the URL; name the file.
			err = fmt.Errorf("--database-url-file %s: %w", c.DatabaseURLFile, err)
		}
		return []error{err}
	}
	return nil
}

// productionDatabaseProblems is the production guard's part for the
// registry: a verified TLS connection (or a unix socket), no password in a
// flag or variable (the file, or PostgreSQL's passfile, holds it), and the
// URL file private like every secret file.
func (c Config) productionDatabaseProblems(getenv func(string) string) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if getenv("PGPASSWORD") != "" {
		bad("PGPASSWORD is set: production reads the database password from a file, never a variable; put it in --database-url-file or a passfile=")
	}
	if c.DatabaseURL != "" && databasePassword(c.DatabaseURL) {
		bad("--database-url carries a password: production reads it from a file, never a flag or variable; put the whole URL in --database-url-file, or use passfile=/path/pgpass in the URL (either readable by recoveryd only)")
	}
	flagName := "--database-url"
	if c.DatabaseURLFile != "" {
		flagName = "--database-url-file"
		if err := auth.CheckSecretFile(c.DatabaseURLFile); err != nil && checkReadable(flagName, c.DatabaseURLFile) == nil {
			bad("--database-url-file %v", err)
		}
	}
	raw, err := c.databaseURL()
	if err != nil || raw == "" {
		// NOTE: a file that cannot be read is databaseProblems' to report.
		return errs
	}
	if mode, ok := postgresNeedsVerifyFull(raw, getenv); !ok {
		bad("%s has sslmode=%s: production requires sslmode=verify-full (the server's certificate and name verified, e.g. with sslrootcert=/path/ca.crt), or a unix socket (host=/var/run/postgresql)", flagName, mode)
	}
	return errs
}
