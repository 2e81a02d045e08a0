package sandbox

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// Values of the assign-key request the contract fixes.
const (
	KeyTypeRSA4096  = "rsa4096"
	EnvironmentHot  = "HOT"
	EnvironmentCold = "COLD"
)

// sign_with field names the contract allows.
const (
	SignExternalCustomerID = "external_customer_id"
	SignExternalPackageID  = "external_package_id"
	SignUserID             = "user_id"
	SignKeyID              = "key_id"
	SignKeyFingerprint     = "key_fingerprint"
	SignPulledByID         = "pulled_by_id"
	SignPulledByType       = "pulled_by_type"
	signPublicKey          = "public_key"
)

// signWithAllowed lists the sign_with names in the order the docs give them.
var signWithAllowed = []string{SignExternalCustomerID, SignExternalPackageID, SignPulledByID,
	SignPulledByType, SignUserID, SignKeyID, SignKeyFingerprint}

// assignKeyRequest is a validated POST /v1/partner/keys body.
type assignKeyRequest struct {
	UserIdentifier string
	KeyEnvironment string
	CustomerID     string
	CustomerName   string
	PackageID      string
	PackageName    string
	SignWith       []string
}

// assignKeyResponse is the 200 body of POST /v1/partner/keys.
type assignKeyResponse struct {
	KeyID         string            `json:"key_id"`
	PublicKey     string            `json:"public_key"`
	Signature     string            `json:"signature"`
	SignedPayload string            `json:"signed_payload,omitempty"`
	SignedFields  []string          `json:"signed_fields,omitempty"`
	CustomerID    string            `json:"customer_id"`
	PackageID     string            `json:"package_id"`
	Metadata      assignKeyMetadata `json:"metadata"`
}

type assignKeyMetadata struct {
	CustomerName string `json:"customer_name"`
	PackageName  string `json:"package_name"`
}

// assignKey serves POST /v1/partner/keys: one key per (user_identifier,
// organisation.customer_id), signed by the enclave key.
func (s *Server) assignKey(r *http.Request, tok *Token) (any, *apiError) {
	obj, apiErr := readJSONObject(r)
	if apiErr != nil {
		return nil, apiErr
	}
	req, apiErr := parseAssignKey(obj)
	if apiErr != nil {
		return nil, apiErr
	}
	pair := assignment{CustomerID: req.CustomerID, UserIdentifier: req.UserIdentifier}
	if err := s.store.reserve(pair); err != nil {
		return nil, &apiError{Status: http.StatusConflict, Type: errTypeConflict, Message: messageAlreadyAssigned}
	}
	reserved := true
	defer func() {
		if reserved {
			s.store.release(pair)
		}
	}()

	priv, done, err := s.takeKey(r.Context())
	if err != nil {
		s.log.Error("sandbox: assign-key has no key to hand out", "error", err)
		return nil, errInternal()
	}
	assigned := false
	defer func() { done(assigned) }()

	pub, err := keycrypto.PublicKeyFromPrivate(priv)
	if err != nil {
		s.log.Error("sandbox: key source returned an unusable key", "error", err)
		return nil, errInternal()
	}
	rec := &keyRecord{
		KeyID:          newUUID(),
		UserIdentifier: req.UserIdentifier,
		UserID:         s.store.userID(pair),
		CustomerID:     req.CustomerID,
		CustomerName:   req.CustomerName,
		PackageID:      req.PackageID,
		PackageName:    req.PackageName,
		KeyEnvironment: req.KeyEnvironment,
		PublicKey:      pub.Hex(),
		CreatedAt:      s.cfg.Now().UTC().Truncate(time.Millisecond),
		private:        priv,
	}
	resp := &assignKeyResponse{
		KeyID:      rec.KeyID,
		PublicKey:  rec.PublicKey,
		CustomerID: rec.CustomerID,
		PackageID:  rec.PackageID,
		Metadata:   assignKeyMetadata{CustomerName: rec.CustomerName, PackageName: rec.PackageName},
	}
	if err := s.signAssignment(resp, req, rec, pub, tok); err != nil {
		s.log.Error("sandbox: signing an assignment failed", "error", err)
		return nil, errInternal()
	}
	reserved = false // commitKey ends the reservation either way
	if err := s.store.commitKey(rec); err != nil {
		s.log.Error("sandbox: recording an assignment failed", "error", err)
		return nil, errInternal()
	}
	assigned = true
	logAttrs(r, "key_id", rec.KeyID, "key_environment", rec.KeyEnvironment, "sign_with", len(req.SignWith))
	return resp, nil
}

// signAssignment fills in the signature (and, with sign_with, the signed
// payload and fields), applying the configured misbehaviour.
func (s *Server) signAssignment(resp *assignKeyResponse, req assignKeyRequest, rec *keyRecord, pub *keycrypto.PublicKey, tok *Token) error {
	signedHex := rec.PublicKey
	if s.cfg.Misbehave == MisbehaveSwappedKey {
		signedHex = decoyPublicKeyHex(rec.PublicKey)
	}
	msg := []byte(signedHex)
	if len(req.SignWith) > 0 {
		values := map[string]string{
			SignExternalCustomerID: rec.CustomerID,
			SignExternalPackageID:  rec.PackageID,
			SignUserID:             rec.UserID,
			SignKeyID:              rec.KeyID,
			SignKeyFingerprint:     pub.Fingerprint(),
			SignPulledByID:         tok.ID,
			SignPulledByType:       tok.Type,
		}
		if s.cfg.Misbehave == MisbehaveWrongBinding {
			values[SignExternalCustomerID] = rec.CustomerID + "-wrong-binding"
		}
		payload := map[string]string{signPublicKey: signedHex}
		for _, f := range req.SignWith {
			v, ok := values[f]
			if !ok || v == "" {
				return fmt.Errorf("sign_with field %q did not resolve", f)
			}
			payload[f] = v
		}
		canonical, err := keycrypto.CanonicalJSON(payload)
		if err != nil {
			return err
		}
		msg = canonical
		resp.SignedPayload = string(canonical)
		resp.SignedFields = slices.Clone(req.SignWith)
	}
	sig, err := s.signing.sign(msg, s.cfg.Misbehave == MisbehaveBadSignature)
	if err != nil {
		return err
	}
	resp.Signature = sig
	return nil
}

// decoyPublicKeyHex is the swapped-key misbehaviour's "other" key: the same
// SPKI with one modulus bit changed (the high nibble of the modulus's last
// byte, so the modulus stays odd and the DER stays well formed). The
// trailing 10 hex characters are the exponent 65537 (0203010001).
func decoyPublicKeyHex(h string) string {
	const exponentHex = len("0203010001")
	i := len(h) - exponentHex - 2
	b := []byte(h)
	const digits = "0123456789abcdef"
	b[i] = digits[strings.IndexByte(digits, b[i])^1]
	return string(b)
}

// parseAssignKey validates every field of the request, reporting each bad
// one.
func parseAssignKey(obj jsonObject) (assignKeyRequest, *apiError) {
	fe := fieldErrors{}
	req := assignKeyRequest{
		UserIdentifier: obj.required("user_identifier", "user_identifier", fe),
		KeyEnvironment: obj.required("key_environment", "key_environment", fe),
	}
	keyType := obj.required("key_type", "key_type", fe)
	switch keyType {
	case "", KeyTypeRSA4096:
	case "secp256k1", "ed25519":
		fe.add("key_type", keyType+" keys sign blockchain backups and are not served by this sandbox; recovery material uses rsa4096")
	default:
		fe.add("key_type", "must be one of rsa4096, secp256k1, ed25519")
	}
	switch req.KeyEnvironment {
	case "", EnvironmentHot, EnvironmentCold:
	default:
		fe.add("key_environment", "must be HOT or COLD (there is no default)")
	}
	if org := obj.object("organisation", true, fe); org != nil {
		req.CustomerID = org.required("customer_id", "organisation.customer_id", fe)
		req.CustomerName = org.required("customer_name", "organisation.customer_name", fe)
	}
	if pkg := obj.object("package", true, fe); pkg != nil {
		req.PackageID = pkg.required("package_id", "package.package_id", fe)
		req.PackageName = pkg.required("package_name", "package.package_name", fe)
	}
	req.SignWith = parseSignWith(obj, fe)
	if err := fe.err(); err != nil {
		return assignKeyRequest{}, err
	}
	return req, nil
}

// parseSignWith validates the optional sign_with list: known names only,
// each once, never public_key (always signed implicitly). An empty list is
// the same as none.
func parseSignWith(obj jsonObject, fe fieldErrors) []string {
	if !obj.has("sign_with") {
		return nil
	}
	raw := bytes.TrimSpace(obj["sign_with"])
	var names []string
	if err := json.Unmarshal(raw, &names); err != nil {
		if raw[0] == '[' {
			fe.add("sign_with", "must contain only field names (strings)")
		} else {
			fe.add("sign_with", "must be an array of field names")
		}
		return nil
	}
	seen := map[string]bool{}
	for _, n := range names {
		switch {
		case n == signPublicKey:
			fe.add("sign_with", "must not list public_key: it is always signed")
		case !slices.Contains(signWithAllowed, n):
			fe.add("sign_with", fmt.Sprintf("unknown field %q (allowed: %s)", n, strings.Join(signWithAllowed, ", ")))
		case seen[n]:
			fe.add("sign_with", fmt.Sprintf("lists %q twice", n))
		}
		seen[n] = true
	}
	return names
}
