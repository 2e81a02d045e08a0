package service

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/attribute"

	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/auth"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// resolveKey finds the recorded key a SecureData or SecureFile request names
// by key_id or public_key_hex (fieldPrefix locates those fields in the
// request, e.g. "header.") and checks that the caller may act for the key's
// organisation. Only keys recorded by AssignKey qualify, AssignKey records a
// key only after verifying the enclave's signature, and the recorded row is
// verified again against that signature (checkKeyReceipt), so nothing is
// ever encrypted or filed to an unverified key, nor to another
// organisation's.
func (s *Server) resolveKey(ctx context.Context, keyID, publicKeyHex, fieldPrefix string) (*registry.Key, *keycrypto.PublicKey, error) {
	var (
		key *registry.Key
		err error
		// notFound is the ErrorInfo metadata of KEY_NOT_FOUND: what the
		// caller sent, never what the registry holds.
		notFound map[string]string
	)
	switch {
	case keyID != "":
		notFound = map[string]string{"key_id": keyID}
		key, err = s.recorded.GetKey(ctx, keyID)
		if errors.Is(err, registry.ErrNotFound) {
			return nil, nil, keyNotFound(err, notFound)
		}
	case publicKeyHex != "":
		// Parse first, so a malformed key is reported precisely instead
		// of as "not found".
		pub, perr := keycrypto.ParsePublicKeyHex(publicKeyHex)
		if perr != nil {
			return nil, nil, invalidField(fieldPrefix+"public_key_hex", perr)
		}
		notFound = map[string]string{"fingerprint_sha256": pub.Fingerprint()}
		key, err = s.recorded.GetKeyByPublicKey(ctx, pub.Hex())
		if errors.Is(err, registry.ErrNotFound) {
			return nil, nil, keyNotFound(err, notFound)
		}
	default:
		return nil, nil, invalidField(fieldPrefix+"key", errors.New("exactly one of key_id or public_key_hex is required"))
	}
	if err != nil {
		return nil, nil, registryFailure(err)
	}
	if err := s.authorizeKey(ctx, key, notFound); err != nil {
		return nil, nil, err
	}
	// NOTE: after authorizing, so another organisation's key is
	// KEY_NOT_FOUND whatever its receipt; before anything is encrypted.
	verified, err := s.checkKeyReceipt(ctx, key)
	if err != nil {
		return nil, nil, err
	}
	annotate(ctx, attribute.String("key_id", key.KeyID), attribute.String("key_environment", key.KeyEnvironment))
	return key, verified.pub, nil
}

// authorizeKey checks the call may act for the organisation that owns key.
// A caller that may not is told KEY_NOT_FOUND with notFound as metadata:
// exactly what a key that does not exist gets, so another organisation's
// keys cannot even be told to exist (the refusal itself is logged, with the
// caller, by statusFromError).
//
// NOTE: NOT_FOUND rather than PERMISSION_DENIED for both: a caller allowed
// every organisation has no organisation to be refused for, and must be
// told NOT_FOUND for a key that does not exist.
func (s *Server) authorizeKey(ctx context.Context, key *registry.Key, notFound map[string]string) error {
	err := s.authz.Authorize(ctx, key.CustomerID)
	if err == nil {
		return nil
	}
	r, ok := errors.AsType[*auth.Refusal](err)
	if !ok || r.Reason != ReasonOrganisationNotAllowed {
		return err
	}
	return keyNotFound(err, notFound)
}

// keyNotFound is the KEY_NOT_FOUND failure for a lookup of what metadata
// names; cause (the registry's ErrNotFound or the authorizer's refusal)
// goes only to the log.
func keyNotFound(cause error, metadata map[string]string) *failure {
	f := fail(ReasonKeyNotFound, cause)
	f.metadata = metadata
	return f
}
