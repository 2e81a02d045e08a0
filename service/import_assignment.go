package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	"go.opentelemetry.io/otel/attribute"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// ImportAssignment records the key the provider's support re-issued for an
// orphaned or elsewhere pair, verified exactly as a fresh assignment's
// (verifyAssignment: the signature against the JWKS, the binding to the
// pair's organisation, package, key id and fingerprint). A refused key
// leaves the pair as it was.
func (a *Admin) ImportAssignment(ctx context.Context, req *recoveryv1.ImportAssignmentRequest) (*recoveryv1.ImportAssignmentResponse, error) {
	s := a.s
	annotate(ctx, attribute.String("customer_id", req.GetCustomerId()), attribute.String("key_id", req.GetKeyId()))
	claim, state, reason, err := s.claims.ClaimForImport(ctx, req.GetUserIdentifier(), req.GetCustomerId())
	switch {
	case errors.Is(err, registry.ErrNotFound):
		return nil, s.statusFromError(ctx, "ImportAssignment", notImportable(map[string]string{"state": "none"}, err))
	case err != nil:
		return nil, s.statusFromError(ctx, "ImportAssignment", registryFailure(err))
	case claim.Token == "":
		return nil, s.statusFromError(ctx, "ImportAssignment",
			notImportable(map[string]string{"state": state.String()}, fmt.Errorf("the pair is %s", state)))
	}
	// NOTE: from here the pair is held; every refusal gives it back as it
	// was, on a context the caller's departure does not cancel.
	work, cancel := s.settling(ctx)
	defer cancel()
	giveBack := func() {
		if err := s.assignments.FailAssignment(work, claim.Token, state, reason); err != nil {
			s.log.LogAttrs(work, slog.LevelError, "giving back a pair after a refused import failed; its lease will make it unknown",
				slog.String("customer_id", claim.Terms.CustomerID), slog.String("error", err.Error()))
		}
	}

	keys, err := s.loadVerificationKeys(ctx)
	if err != nil {
		giveBack()
		return nil, s.statusFromError(ctx, "ImportAssignment", fail(ReasonVerificationKeysUnavailable, err))
	}
	fields := req.GetSignedFields()
	if len(fields) == 0 {
		fields = signWith
	}
	resp := &upstream.AssignKeyResponse{
		KeyID:         req.GetKeyId(),
		PublicKey:     req.GetPublicKeyHex(),
		Signature:     req.GetSignature(),
		SignedPayload: req.GetSignedPayload(),
		SignedFields:  fields,
		// The re-issued key is for the recorded pair; the binding in the
		// signed payload is what proves it.
		CustomerID: claim.Terms.CustomerID,
		PackageID:  claim.Terms.PackageID,
	}
	key, err := s.verifyAssignment(ctx, claim.Terms, resp, keys)
	if err != nil {
		giveBack()
		check, _, _ := strings.Cut(err.Error(), ":")
		return nil, s.statusFromError(ctx, "ImportAssignment", notImportable(map[string]string{"check": check}, err))
	}
	if err := s.assignments.CompleteAssignment(work, claim.Token, *key); err != nil {
		giveBack()
		if errors.Is(err, registry.ErrDuplicate) {
			return nil, s.statusFromError(ctx, "ImportAssignment", notImportable(map[string]string{"check": "duplicate"}, err))
		}
		return nil, s.statusFromError(ctx, "ImportAssignment", registryFailure(err))
	}
	s.log.LogAttrs(ctx, slog.LevelWarn, "operator imported a re-issued key",
		slog.String("customer_id", claim.Terms.CustomerID), slog.String("key_id", key.KeyID), slog.String("was", state.String()))
	recorded, err := s.recorded.GetKey(work, key.KeyID)
	if err != nil {
		recorded = key
	}
	out, err := keyToProto(recorded)
	if err != nil {
		return nil, s.statusFromError(ctx, "ImportAssignment", err)
	}
	return &recoveryv1.ImportAssignmentResponse{Key: out}, nil
}

// notImportable is ASSIGNMENT_NOT_IMPORTABLE with what the operator may act
// on.
func notImportable(metadata map[string]string, cause error) *failure {
	f := fail(ReasonAssignmentNotImportable, cause)
	f.metadata = metadata
	return f
}
