package keycrypto

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"unicode/utf8"
)

// payloadPublicKey is the member every signed payload holds; it can never
// be a requested sign_with field.
const payloadPublicKey = "public_key"

// Binding is what a verified signature must bind: the requested sign_with
// field names in request order and the value expected for each.
type Binding struct {
	Fields []string
	Values map[string]string
}

// CheckBinding checks (after VerifySignature) that SignedFields equals
// b.Fields in order, that SignedPayload parses as a JSON object whose
// public_key equals PublicKeyHex, and that each bound field equals
// b.Values[field]. ErrBindingMismatch naming the first offending field.
//
// The payload must hold exactly public_key and the requested fields, each
// once and each a string: a duplicate member could show one value to us and
// another to a different parser, and an unrequested member is a payload we
// did not ask the enclave to sign. Values are never echoed in errors.
func CheckBinding(a SignedAssignment, b Binding) error {
	if err := checkBindingRequest(b); err != nil {
		return err
	}
	if err := checkSignedFields(a.SignedFields, b.Fields); err != nil {
		return err
	}
	if a.SignedPayload == "" {
		if len(b.Fields) == 0 {
			return nil // nothing requested: the signature covers public_key alone
		}
		return fmt.Errorf("%w: fields were requested but there is no signed_payload", ErrBindingMismatch)
	}
	payload, err := parsePayload(a.SignedPayload)
	if err != nil {
		return fmt.Errorf("%w: signed_payload: %w", ErrBindingMismatch, err)
	}
	if pk, ok := payload[payloadPublicKey]; !ok {
		return fmt.Errorf("%w: signed_payload has no %q", ErrBindingMismatch, payloadPublicKey)
	} else if pk != a.PublicKeyHex {
		return fmt.Errorf("%w: signed_payload %q differs from the response's public_key", ErrBindingMismatch, payloadPublicKey)
	}
	for _, f := range b.Fields {
		got, ok := payload[f]
		if !ok {
			return fmt.Errorf("%w: signed_payload lacks requested field %q", ErrBindingMismatch, f)
		}
		if got != b.Values[f] {
			return fmt.Errorf("%w: field %q in signed_payload is not the expected value", ErrBindingMismatch, f)
		}
	}
	if len(payload) != len(b.Fields)+1 {
		for name := range payload {
			if name != payloadPublicKey && !slices.Contains(b.Fields, name) {
				return fmt.Errorf("%w: signed_payload has unrequested field %q", ErrBindingMismatch, name)
			}
		}
	}
	return nil
}

// checkBindingRequest rejects a Binding the caller could never have sent:
// public_key as a field, a field twice, a field without an expected value.
func checkBindingRequest(b Binding) error {
	seen := make(map[string]bool, len(b.Fields))
	for _, f := range b.Fields {
		switch {
		case f == payloadPublicKey:
			return fmt.Errorf("%w: %q cannot be a sign_with field", ErrBindingMismatch, f)
		case seen[f]:
			return fmt.Errorf("%w: field %q is requested twice", ErrBindingMismatch, f)
		}
		if _, ok := b.Values[f]; !ok {
			return fmt.Errorf("%w: no expected value for requested field %q", ErrBindingMismatch, f)
		}
		seen[f] = true
	}
	return nil
}

// checkSignedFields compares the echoed signed_fields with the request,
// name by name, in order.
func checkSignedFields(got, want []string) error {
	for i := 0; i < len(got) || i < len(want); i++ {
		switch {
		case i >= len(want):
			return fmt.Errorf("%w: signed_fields has unrequested extra field %q", ErrBindingMismatch, got[i])
		case i >= len(got):
			return fmt.Errorf("%w: signed_fields lacks requested field %q", ErrBindingMismatch, want[i])
		case got[i] != want[i]:
			return fmt.Errorf("%w: signed_fields[%d] is %q, want %q (fields missing, extra or reordered)",
				ErrBindingMismatch, i, got[i], want[i])
		}
	}
	return nil
}

// parsePayload reads a JSON object of string members, refusing invalid
// UTF-8, duplicate members, non-string values and trailing data.
func parsePayload(s string) (map[string]string, error) {
	if !utf8.ValidString(s) {
		return nil, fmt.Errorf("not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader([]byte(s)))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("not a JSON object")
	}
	out := map[string]string{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("malformed JSON")
		}
		name, ok := tok.(string)
		if !ok {
			return nil, fmt.Errorf("malformed JSON")
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("member %q appears more than once", name)
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("malformed JSON")
		}
		var v string
		if raw[0] != '"' || json.Unmarshal(raw, &v) != nil {
			return nil, fmt.Errorf("member %q is not a string", name)
		}
		out[name] = v
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('}') {
		return nil, fmt.Errorf("malformed JSON")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	return out, nil
}
