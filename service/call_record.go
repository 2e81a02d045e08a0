package service

import (
	"context"

	"github.com/walletprovider/recoveryservice/service/registry"
)

// WriteSubject names what a call's registry write touches, for the audit
// record that commits with it.
type WriteSubject struct {
	CustomerID string
	PackageID  string
	KeyID      string
	BackupID   string
}

// CallRecorder commits the registry write a call makes (AssignKey's key,
// SecureData's and SecureFile's backup) in one transaction with the call's
// audit record: recoveryd's audit position puts one in each call's context
// (WithCallRecorder). Without one a write commits on its own.
type CallRecorder interface {
	// CommitHook is the registry commit hook for the call's write, whose
	// record names subject and the outcome OK: the record is written only
	// if the write commits, and the write only with its record.
	CommitHook(ctx context.Context, subject WriteSubject) registry.CommitHook
}

type callRecorderKey struct{}

// WithCallRecorder returns ctx carrying the call's recorder.
func WithCallRecorder(ctx context.Context, r CallRecorder) context.Context {
	return context.WithValue(ctx, callRecorderKey{}, r)
}

// recordedWrite returns ctx under which the registry write made with it
// commits together with the call's audit record naming subject; ctx itself
// when the call has no recorder.
func recordedWrite(ctx context.Context, subject WriteSubject) context.Context {
	r, _ := ctx.Value(callRecorderKey{}).(CallRecorder)
	if r == nil {
		return ctx
	}
	return registry.WithCommitHook(ctx, r.CommitHook(ctx, subject))
}
