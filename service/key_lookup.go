package service

import (
	"context"
	"errors"
	"fmt"

	"go.opentelemetry.io/otel/attribute"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// resolveKey finds the recorded key a SecureData or SecureFile request names
// by key_id or public_key_hex (fieldPrefix locates those fields in the
// request, e.g. "header.") and checks that the caller may act for the key's
// organisation. Only keys recorded by AssignKey qualify, and AssignKey
// records a key only after verifying the enclave's signature, so nothing is
// ever encrypted or filed to an unverified key, nor to another
// organisation's.
func (s *Server) resolveKey(ctx context.Context, keyID, publicKeyHex, fieldPrefix string) (*registry.Key, *keycrypto.PublicKey, error) {
	var (
		key *registry.Key
		err error
	)
	switch {
	case keyID != "":
		key, err = s.recorded.GetKey(ctx, keyID)
		if errors.Is(err, registry.ErrNotFound) {
			f := fail(ReasonKeyNotFound, err)
			f.metadata = map[string]string{"key_id": keyID}
			return nil, nil, f
		}
	case publicKeyHex != "":
		// Parse first, so a malformed key is reported precisely instead
		// of as "not found".
		pub, perr := keycrypto.ParsePublicKeyHex(publicKeyHex)
		if perr != nil {
			return nil, nil, invalidField(fieldPrefix+"public_key_hex", perr)
		}
		key, err = s.recorded.GetKeyByPublicKey(ctx, pub.Hex())
		if errors.Is(err, registry.ErrNotFound) {
			f := fail(ReasonKeyNotFound, err)
			f.metadata = map[string]string{"fingerprint_sha256": pub.Fingerprint()}
			return nil, nil, f
		}
	default:
		return nil, nil, invalidField(fieldPrefix+"key", errors.New("exactly one of key_id or public_key_hex is required"))
	}
	if err != nil {
		return nil, nil, registryFailure(err)
	}
	if err := s.authorizeKey(ctx, key); err != nil {
		return nil, nil, err
	}
	pub, err := keycrypto.ParsePublicKeyHex(key.PublicKeyHex)
	if err != nil {
		return nil, nil, fmt.Errorf("recorded key %s has an unusable public key: %w", key.KeyID, err)
	}
	annotate(ctx, attribute.String("key_id", key.KeyID), attribute.String("key_environment", key.KeyEnvironment))
	return key, pub, nil
}

// authorizeKey checks the call may act for the organisation that owns key.
//
// NOTE: a refusal names the key the caller sent, never the organisation that
// owns it: a caller that may not act for that organisation must not learn
// which organisation it is.
func (s *Server) authorizeKey(ctx context.Context, key *registry.Key) error {
	err := s.authz.Authorize(ctx, key.CustomerID)
	if err == nil {
		return nil
	}
	r, ok := errors.AsType[*auth.Refusal](err)
	if !ok || r.Reason != ReasonOrganisationNotAllowed {
		return err
	}
	metadata := map[string]string{"key_id": key.KeyID}
	if caller, ok := r.Metadata["caller"]; ok {
		metadata["caller"] = caller
	}
	return &failure{reason: r.Reason, metadata: metadata, cause: err}
}
