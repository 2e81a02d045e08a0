package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/registry"
	"github.com/walletprovider/recoveryservice/upstream"
)

// Results of recovery.signature.verifications: "valid" or the check that
// failed.
const (
	verificationValid            = "valid"
	verificationInvalidPublicKey = "invalid_public_key"
	verificationInvalidSignature = "invalid_signature"
	verificationBindingMismatch  = "binding_mismatch"
	verificationResponseMismatch = "response_mismatch"
)

// verifyAssignment checks an assign-key response before anything is
// recorded or encrypted to its key: the public key parses as RSA-4096, the
// enclave signature verifies against the trusted keys (refreshed once if
// none verifies), the signature binds the organisation, package, key id and
// locally computed fingerprint, and the response names the requested
// organisation and package. It returns the key to record.
func (s *Server) verifyAssignment(ctx context.Context, terms registry.KeyTerms, resp *upstream.AssignKeyResponse, keys []keycrypto.VerificationKey) (*registry.Key, error) {
	ctx, span := tracer.Start(ctx, "service.verify_signature", trace.WithAttributes(
		attribute.String("key_id", resp.KeyID),
		attribute.String("key_environment", terms.KeyEnvironment)))
	defer span.End()

	pub, signer, result, err := s.checkAssignment(ctx, terms, resp, keys)
	span.SetAttributes(attribute.String("result", result))
	s.metrics.verification(ctx, result)
	if err != nil {
		span.SetStatus(otelcodes.Error, result)
		s.log.LogAttrs(ctx, slog.LevelError, "enclave signature verification failed: key not trusted",
			slog.String("key_id", resp.KeyID),
			slog.String("customer_id", terms.CustomerID),
			slog.String("check", result),
			slog.String("error", err.Error()))
		return nil, fmt.Errorf("%s: %w", result, err)
	}
	return &registry.Key{
		KeyTerms:     terms,
		KeyID:        resp.KeyID,
		PublicKeyHex: pub.Hex(),
		Fingerprint:  pub.Fingerprint(),
		AssignedAt:   s.now().UTC(),
		Receipt: registry.Receipt{
			Signature:     resp.Signature,
			SignedPayload: resp.SignedPayload,
			SigningKeyID:  signer.KID,
		},
	}, nil
}

// checkAssignment runs the checks in order and names the first that fails.
func (s *Server) checkAssignment(ctx context.Context, terms registry.KeyTerms, resp *upstream.AssignKeyResponse, keys []keycrypto.VerificationKey) (*keycrypto.PublicKey, keycrypto.VerificationKey, string, error) {
	var signer keycrypto.VerificationKey
	if resp.KeyID == "" {
		return nil, signer, verificationResponseMismatch, errors.New("response has no key_id")
	}
	pub, err := keycrypto.ParsePublicKeyHex(resp.PublicKey)
	if err != nil {
		return nil, signer, verificationInvalidPublicKey, err
	}
	signed := resp.SignedAssignment()
	signer, err = keycrypto.VerifySignatureKey(keys, signed)
	if errors.Is(err, keycrypto.ErrSignatureInvalid) || errors.Is(err, keycrypto.ErrNoVerificationKey) {
		// The enclave may have rotated to a key published after our cache
		// was filled: refresh once, then decide.
		refreshed, rerr := s.keys.Refresh(ctx)
		if rerr != nil {
			return nil, signer, verificationInvalidSignature, fmt.Errorf("%w (refreshing the verification keys failed: %w)", err, rerr)
		}
		signer, err = keycrypto.VerifySignatureKey(refreshed, signed)
	}
	if err != nil {
		return nil, signer, verificationInvalidSignature, err
	}
	binding := keycrypto.Binding{
		Fields: signWith,
		Values: map[string]string{
			"external_customer_id": terms.CustomerID,
			"external_package_id":  terms.PackageID,
			"key_id":               resp.KeyID,
			"key_fingerprint":      pub.Fingerprint(),
		},
	}
	if err := keycrypto.CheckBinding(signed, binding); err != nil {
		return nil, signer, verificationBindingMismatch, err
	}
	if resp.CustomerID != terms.CustomerID {
		return nil, signer, verificationResponseMismatch, fmt.Errorf("response customer_id %q, requested %q", resp.CustomerID, terms.CustomerID)
	}
	if resp.PackageID != terms.PackageID {
		return nil, signer, verificationResponseMismatch, fmt.Errorf("response package_id %q, requested %q", resp.PackageID, terms.PackageID)
	}
	return pub, signer, verificationValid, nil
}
