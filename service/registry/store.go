package registry

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Store is the registry on SQLite or PostgreSQL. Safe for concurrent use,
// including by several processes sharing one PostgreSQL database.
type Store struct {
	// write runs every transaction that changes rows. On SQLite it holds a
	// single connection whose transactions begin IMMEDIATE, so writers in
	// this process queue in Go instead of contending for the file lock; on
	// PostgreSQL it is the pool.
	write *sql.DB
	// read runs single-statement lookups and listings. On SQLite it is a
	// small pool of query-only connections that WAL lets read alongside the
	// writer; on PostgreSQL it is the same pool as write.
	read *sql.DB

	// stmts are the hot paths' statements, prepared once where the dialect
	// reuses them.
	stmts statements

	// batch, on SQLite, commits the write transactions waiting together
	// (batch.go); nil on PostgreSQL, whose writers commit concurrently.
	batch *batcher

	dialect dialect
	now     func() time.Time
	log     *slog.Logger
	tel     *telemetry
}

// Option adjusts how a Store is opened.
type Option func(*options)

type options struct {
	clock          func() time.Time
	logger         *slog.Logger
	tracerProvider trace.TracerProvider
	meterProvider  metric.MeterProvider
	maxConns       int
	migrations     fs.FS // tests substitute a broken set
	// textStatements sends every statement as text, preparing none: with
	// a substitute migration set (the registry's tables may be missing) and
	// in benchmarks that measure what preparing saves.
	textStatements bool
}

// WithClock sets the clock used for reserved_at, assigned_at, stored_at
// defaults and lease expiry, so tests can move time instead of sleeping.
func WithClock(now func() time.Time) Option {
	return func(o *options) { o.clock = now }
}

// WithLogger sets the logger (nil: slog.Default()).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithTracerProvider sets where spans go (default: the global provider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) { o.tracerProvider = tp }
}

// WithMeterProvider sets where metrics go (default: the global provider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) { o.meterProvider = mp }
}

// WithMaxConns bounds the PostgreSQL pool (default 16) so that N replicas
// stay within the server's max_connections, and the SQLite reader pool
// (default 4). The SQLite writer is always one connection.
func WithMaxConns(n int) Option {
	return func(o *options) { o.maxConns = n }
}

func withMigrations(fsys fs.FS) Option {
	return func(o *options) { o.migrations, o.textStatements = fsys, true }
}

// withTextStatements makes a Store prepare nothing, so that a benchmark can
// measure the text path beside the prepared one.
func withTextStatements() Option {
	return func(o *options) { o.textStatements = true }
}

func buildOptions(opts []Option) options {
	o := options{migrations: embeddedMigrations}
	for _, opt := range opts {
		if opt != nil {
			opt(&o)
		}
	}
	if o.clock == nil {
		o.clock = time.Now
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	return o
}

// open finishes Open{SQLite,Postgres}: it migrates, prepares the hot-path
// statements where the dialect reuses them, and assembles the Store. It
// closes the pools when it fails so callers need not.
func open(ctx context.Context, d dialect, write, read *sql.DB, o options) (*Store, error) {
	s := &Store{
		write:   write,
		read:    read,
		stmts:   newStatements(write, read),
		dialect: d,
		now:     func() time.Time { return o.clock().UTC().Truncate(time.Microsecond) },
		log:     o.logger.With("component", "registry", "backend", d.name()),
		tel:     newTelemetry(d.name(), o.tracerProvider, o.meterProvider),
	}
	if err := s.migrate(ctx, o.migrations); err != nil {
		_ = s.Close()
		return nil, err
	}
	// NOTE: after migrating: the statements name the registry's tables.
	if d.reusesPreparedStatements() && !o.textStatements {
		if err := s.stmts.prepare(ctx); err != nil {
			_ = s.Close()
			return nil, err
		}
	}
	return s, nil
}

// Close releases the prepared statements and the database.
func (s *Store) Close() error {
	if s.batch != nil {
		s.batch.close()
	}
	err := errors.Join(s.stmts.close(), s.write.Close())
	if s.read != s.write {
		err = errors.Join(err, s.read.Close())
	}
	return err
}

// Ping checks the database answers.
func (s *Store) Ping(ctx context.Context) (err error) {
	ctx, end := s.tel.start(ctx, "Ping")
	defer func() { end(err, "") }()
	if err := s.write.PingContext(ctx); err != nil {
		return fmt.Errorf("registry: ping: %w", err)
	}
	if s.read != s.write {
		if err := s.read.PingContext(ctx); err != nil {
			return fmt.Errorf("registry: ping: %w", err)
		}
	}
	return nil
}

// ProbeWrite proves the registry can write: it commits one row's update,
// as a store's record would. Ping only proves a connection.
func (s *Store) ProbeWrite(ctx context.Context) (err error) {
	ctx, end := s.tel.start(ctx, "ProbeWrite")
	defer func() { end(err, "") }()
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO write_probe (id, probed_at) VALUES (1, $1)
			 ON CONFLICT (id) DO UPDATE SET probed_at = excluded.probed_at`,
			time.Now().UTC().Format(time.RFC3339Nano))
		return err
	})
	if err != nil {
		return fmt.Errorf("registry: write probe: %w", err)
	}
	return nil
}

// inTx runs fn in a write transaction and commits it when fn returns nil.
// On SQLite the transaction may be shared with other writes waiting at the
// same time (batch.go): fn must do nothing but its statements on tx.
//
// Under WithCommitHook the hook commits fn instead (audit_writes.go).
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if h := commitHookFrom(ctx); h != nil {
		return h(TxWrite{fn: fn})
	}
	return s.commit(ctx, fn)
}

// commit runs fn in a write transaction of the store's own.
func (s *Store) commit(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if s.batch != nil {
		return s.batch.do(ctx, fn)
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("registry: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("registry: commit: %w", err)
	}
	return nil
}

// newToken returns a reservation token: 128 random bits, so that no caller
// can guess another's reservation.
func newToken() string {
	var b [16]byte
	// crypto/rand.Read never fails on supported platforms (it panics
	// instead), so there is no error to return.
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// argList numbers query parameters as $1, $2 …, which both PostgreSQL and
// SQLite accept, so that both backends share their SQL text.
type argList []any

func (a *argList) add(v any) string {
	*a = append(*a, v)
	return fmt.Sprintf("$%d", len(*a))
}
