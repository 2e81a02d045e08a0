package service

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// instrumentationName names this package's tracer and meter.
const instrumentationName = "github.com/walletprovider/recoveryservice/service"

var tracer = otel.Tracer(instrumentationName)

// Outcomes of recovery.assignments.
const (
	outcomeNew               = "new"
	outcomeRepeat            = "repeat"
	outcomeAssignedElsewhere = "assigned_elsewhere"
	outcomeOrphaned          = "orphaned"
	outcomeUnknown           = "unknown"
	outcomeUntrusted         = "untrusted"
	outcomeDifferentTerms    = "different_terms"
	// outcomeResentAfterUnknown: a backup repeated under its idempotency
	// key after an unknown outcome is stored again (a possible extra copy).
	outcomeResentAfterUnknown = "resent_after_unknown"
)

// instruments are the package's metric instruments, made once per Server
// from the global MeterProvider that recoveryd installs.
type instruments struct {
	assignments   metric.Int64Counter
	verifications metric.Int64Counter
	errors        metric.Int64Counter
	backups       metric.Int64Counter
	fileBytes     metric.Int64Counter
	receipts      metric.Int64Counter
}

func newInstruments() *instruments {
	meter := otel.Meter(instrumentationName)
	// NOTE: instrument constructors only fail on invalid names; the names
	// here are constants, and a failed constructor still returns a usable
	// no-op instrument, so the errors are deliberately ignored.
	assignments, _ := meter.Int64Counter("recovery.assignments",
		metric.WithDescription("AssignKey requests by outcome: new, repeat, assigned_elsewhere, orphaned, unknown, untrusted, different_terms."))
	verifications, _ := meter.Int64Counter("recovery.signature.verifications",
		metric.WithDescription("Enclave signature verifications of assigned keys by result."))
	errs, _ := meter.Int64Counter("recovery.errors",
		metric.WithDescription("Errors returned to callers by RPC, gRPC code and ErrorInfo reason."))
	backups, _ := meter.Int64Counter("recovery.backups",
		metric.WithDescription("Backups by type and outcome: stored, repeat, unrecorded, resent_after_unknown (stored again after an unknown outcome: the upstream may hold an extra copy)."))
	fileBytes, _ := meter.Int64Counter("recovery.secure_file.bytes",
		metric.WithDescription("Bytes of the files SecureFile stored upstream."), metric.WithUnit("By"))
	receipts, _ := meter.Int64Counter("recovery.key_receipt.checks",
		metric.WithDescription("Checks that a recorded key still verifies against its enclave signature before use, by result."))
	return &instruments{assignments: assignments, verifications: verifications, errors: errs, backups: backups, fileBytes: fileBytes, receipts: receipts}
}

func (m *instruments) assignment(ctx context.Context, outcome string) {
	m.assignments.Add(ctx, 1, metric.WithAttributes(attribute.String("outcome", outcome)))
}

func (m *instruments) verification(ctx context.Context, result string) {
	m.verifications.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// receiptCheck counts a check of a recorded key's receipt by result.
func (m *instruments) receiptCheck(ctx context.Context, result string) {
	m.receipts.Add(ctx, 1, metric.WithAttributes(attribute.String("result", result)))
}

// fileStored counts the bytes of a file stored upstream.
func (m *instruments) fileStored(ctx context.Context, size int64) {
	m.fileBytes.Add(ctx, size)
}

func (m *instruments) backup(ctx context.Context, backupType, outcome string) {
	m.backups.Add(ctx, 1, metric.WithAttributes(
		attribute.String("backup_type", backupType), attribute.String("outcome", outcome)))
}

// annotate sets attributes on the RPC's current span (made by recoveryd's
// otelgrpc stats handler). Only ids, environments and sizes: never key
// material, plaintext or ciphertext.
func annotate(ctx context.Context, attrs ...attribute.KeyValue) {
	trace.SpanFromContext(ctx).SetAttributes(attrs...)
}
