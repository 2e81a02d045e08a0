package upstream

import (
	"cmp"
	"context"
	"encoding/json"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

// KeyTypeRSA4096 is the only key type this project assigns: recovery
// material is encrypted to it.
const KeyTypeRSA4096 = "rsa4096"

// Key environments; fixed for the life of a key and never defaulted.
const (
	KeyEnvironmentHot  = "HOT"
	KeyEnvironmentCold = "COLD"
)

// AssignKeyRequest is POST /v1/partner/keys.
type AssignKeyRequest struct {
	UserIdentifier string
	KeyType        string // "rsa4096"
	KeyEnvironment string // "HOT" | "COLD"
	CustomerID     string
	CustomerName   string
	PackageID      string
	PackageName    string
	SignWith       []string
}

// AssignKeyResponse is the 200 body of POST /v1/partner/keys.
type AssignKeyResponse struct {
	KeyID         string
	PublicKey     string // hex, exactly as received
	Signature     string
	SignedPayload string // exact bytes as received
	SignedFields  []string
	CustomerID    string
	PackageID     string
	CustomerName  string
	PackageName   string
}

// SignedAssignment returns the parts keycrypto verifies.
func (r *AssignKeyResponse) SignedAssignment() keycrypto.SignedAssignment {
	return keycrypto.SignedAssignment{
		PublicKeyHex:  r.PublicKey,
		Signature:     r.Signature,
		SignedPayload: r.SignedPayload,
		SignedFields:  r.SignedFields,
	}
}

// assignKeyBody is the wire form of AssignKeyRequest.
type assignKeyBody struct {
	UserIdentifier string           `json:"user_identifier"`
	KeyType        string           `json:"key_type"`
	KeyEnvironment string           `json:"key_environment"`
	Organisation   organisationBody `json:"organisation"`
	Package        packageBody      `json:"package"`
	SignWith       []string         `json:"sign_with,omitempty"`
}

type organisationBody struct {
	CustomerID   string `json:"customer_id"`
	CustomerName string `json:"customer_name"`
}

type packageBody struct {
	PackageID   string `json:"package_id"`
	PackageName string `json:"package_name"`
}

// assignKeyReply is the wire form of AssignKeyResponse; customer_id,
// package_id and the metadata names are nullable in the contract, which
// decodes to "".
type assignKeyReply struct {
	KeyID         string   `json:"key_id"`
	PublicKey     string   `json:"public_key"`
	Signature     string   `json:"signature"`
	SignedPayload string   `json:"signed_payload"`
	SignedFields  []string `json:"signed_fields"`
	CustomerID    string   `json:"customer_id"`
	PackageID     string   `json:"package_id"`
	Metadata      struct {
		CustomerName string `json:"customer_name"`
		PackageName  string `json:"package_name"`
	} `json:"metadata"`
}

// Contract bounds on what an assign-key response may hold.
const (
	maxKeyIDLen     = 128
	maxPublicKeyHex = 4096
)

// AssignKey calls POST /v1/partner/keys, retrying after an ambiguous
// failure (retryPolicies): a 409 on a retry then carries
// Error.AfterAmbiguousAttempt, the sign of our own lost answer. KeyType "" means KeyTypeRSA4096. A missing required field is refused
// locally (KindInvalid, Sent false) before anything is sent.
func (c *Client) AssignKey(ctx context.Context, req AssignKeyRequest) (_ *AssignKeyResponse, err error) {
	e := endpointAssignKey
	ctx, span := c.tracer.Start(ctx, "upstream.AssignKey",
		trace.WithAttributes(attribute.String("key_environment", req.KeyEnvironment)))
	defer span.End()
	defer func() { recordOutcome(span, err) }()

	body, err := assignKeyWire(req)
	if err != nil {
		return nil, err
	}
	raw, err := json.Marshal(body)
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Endpoint: e.String(), Message: "request not sent: encoding failed", Err: err}
	}
	reply, err := c.doJSON(ctx, e, raw)
	if err != nil {
		return nil, err
	}
	resp, err := decodeAssignKey(reply, len(req.SignWith) > 0)
	if err != nil {
		return nil, err
	}
	span.SetAttributes(attribute.String("key_id", resp.KeyID))
	return resp, nil
}

// assignKeyWire checks req and builds its wire form.
func assignKeyWire(req AssignKeyRequest) (*assignKeyBody, error) {
	e := endpointAssignKey
	keyType := cmp.Or(req.KeyType, KeyTypeRSA4096)
	required := []struct{ field, value string }{
		{"user_identifier", req.UserIdentifier},
		{"organisation.customer_id", req.CustomerID},
		{"organisation.customer_name", req.CustomerName},
		{"package.package_id", req.PackageID},
		{"package.package_name", req.PackageName},
	}
	for _, r := range required {
		if strings.TrimSpace(r.value) == "" {
			return nil, invalidRequest(e, r.field, "is required")
		}
	}
	if req.KeyEnvironment != KeyEnvironmentHot && req.KeyEnvironment != KeyEnvironmentCold {
		return nil, invalidRequest(e, "key_environment", `must be "HOT" or "COLD" (there is no default)`)
	}
	for _, f := range req.SignWith {
		if f == "public_key" {
			return nil, invalidRequest(e, "sign_with", "must not list public_key (it is always signed)")
		}
	}
	return &assignKeyBody{
		UserIdentifier: req.UserIdentifier,
		KeyType:        keyType,
		KeyEnvironment: req.KeyEnvironment,
		Organisation:   organisationBody{CustomerID: req.CustomerID, CustomerName: req.CustomerName},
		Package:        packageBody{PackageID: req.PackageID, PackageName: req.PackageName},
		SignWith:       req.SignWith,
	}, nil
}

// decodeAssignKey parses a 200 body, refusing one that lacks what the
// caller must verify and record.
func decodeAssignKey(raw []byte, signWith bool) (*AssignKeyResponse, error) {
	e := endpointAssignKey
	var r assignKeyReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, protocolError(e, 200, "response is not the assign-key JSON object: %v", err)
	}
	switch {
	case r.KeyID == "":
		return nil, protocolError(e, 200, "response has no key_id")
	case len(r.KeyID) > maxKeyIDLen || strings.ContainsFunc(r.KeyID, notPrintableASCII):
		return nil, protocolError(e, 200, "response key_id is not a short printable identifier")
	case r.PublicKey == "":
		return nil, protocolError(e, 200, "response has no public_key")
	case len(r.PublicKey) > maxPublicKeyHex || !isHex(r.PublicKey):
		return nil, protocolError(e, 200, "response public_key is not hex of at most %d characters", maxPublicKeyHex)
	case r.Signature == "":
		return nil, protocolError(e, 200, "response has no signature")
	case signWith && r.SignedPayload == "":
		return nil, protocolError(e, 200, "response has no signed_payload although sign_with was sent")
	}
	return &AssignKeyResponse{
		KeyID:         r.KeyID,
		PublicKey:     r.PublicKey,
		Signature:     r.Signature,
		SignedPayload: r.SignedPayload,
		SignedFields:  r.SignedFields,
		CustomerID:    r.CustomerID,
		PackageID:     r.PackageID,
		CustomerName:  r.Metadata.CustomerName,
		PackageName:   r.Metadata.PackageName,
	}, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

func notPrintableASCII(r rune) bool { return r < 0x21 || r > 0x7e }
