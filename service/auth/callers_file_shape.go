package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// shape describes the JSON a callers file may contain. encoding/json alone
// is too lenient for a security policy: it matches field names without
// regard to case, keeps the last of repeated fields, and turns null into an
// empty value. checkShape walks the tokens against a shape first, so every
// such slip is an error naming the exact field.
type shape struct {
	kind   shapeKind
	fields map[string]*shape // kind == objectShape
	elem   *shape            // kind == arrayShape
}

// shapeKind is the JSON type a value must have.
type shapeKind int

const (
	stringShape shapeKind = iota + 1
	numberShape
	objectShape
	arrayShape
)

// String names the kind with its article, for messages.
func (k shapeKind) String() string {
	switch k {
	case stringShape:
		return "a string"
	case numberShape:
		return "a number"
	case objectShape:
		return "an object"
	case arrayShape:
		return "an array"
	}
	return "unknown"
}

// callersFileShape is {"callers": [{"name": s, "token_sha256": s,
// "organisations": [s], "rate_limit": n, "rate_burst": n,
// "max_concurrent_calls": n, "roles": [s]}]}; the numbers and roles are
// optional.
var callersFileShape = &shape{kind: objectShape, fields: map[string]*shape{
	"callers": {kind: arrayShape, elem: &shape{kind: objectShape, fields: map[string]*shape{
		"name":                 {kind: stringShape},
		"token_sha256":         {kind: stringShape},
		"organisations":        {kind: arrayShape, elem: &shape{kind: stringShape}},
		"rate_limit":           {kind: numberShape},
		"rate_burst":           {kind: numberShape},
		"max_concurrent_calls": {kind: numberShape},
		"roles":                {kind: arrayShape, elem: &shape{kind: stringShape}},
	}}},
}}

// checkShape reports the first place data departs from callersFileShape.
func checkShape(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkShape(dec, "", callersFileShape); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return &FileError{Problem: "unexpected data after the JSON object"}
	}
	return nil
}

// walkShape consumes one JSON value from dec and checks it against want.
// field is the value's JSON path, for messages.
func walkShape(dec *json.Decoder, field string, want *shape) error {
	tok, err := dec.Token()
	if err != nil {
		return syntaxError(field, err)
	}
	got := jsonKind(tok)
	switch {
	case got == "null":
		return &FileError{Field: field, Problem: fmt.Sprintf("must be %s, not null", want.kind)}
	case tok == json.Delim('{') && want.kind == objectShape:
		return walkObject(dec, field, want)
	case tok == json.Delim('[') && want.kind == arrayShape:
		for i := 0; dec.More(); i++ {
			if err := walkShape(dec, fmt.Sprintf("%s[%d]", field, i), want.elem); err != nil {
				return err
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return syntaxError(field, err)
		}
		return nil
	case got == "a string" && want.kind == stringShape:
		return nil
	case got == "a number" && want.kind == numberShape:
		return nil
	}
	return &FileError{Field: field, Problem: fmt.Sprintf("must be %s, not %s", want.kind, got)}
}

// walkObject checks the members of an object whose '{' was just read:
// every name must be one of want's fields, spelled exactly, at most once.
func walkObject(dec *json.Decoder, field string, want *shape) error {
	seen := make(map[string]bool, len(want.fields))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return syntaxError(field, err)
		}
		name, _ := tok.(string) // object keys are always strings
		member := name
		if field != "" {
			member = field + "." + name
		}
		child, known := want.fields[name]
		if !known {
			return &FileError{Field: member, Problem: unknownFieldProblem(name, want)}
		}
		if seen[name] {
			return &FileError{Field: member, Problem: "appears more than once"}
		}
		seen[name] = true
		if err := walkShape(dec, member, child); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // '}'
		return syntaxError(field, err)
	}
	return nil
}

// unknownFieldProblem explains an unknown field, pointing out a field that
// differs only in case (field names are case-sensitive).
func unknownFieldProblem(name string, want *shape) string {
	for known := range want.fields {
		if strings.EqualFold(known, name) {
			return fmt.Sprintf("unknown field; field names are case-sensitive, did you mean %q?", known)
		}
	}
	names := make([]string, 0, len(want.fields))
	for known := range want.fields {
		names = append(names, known)
	}
	slices.Sort(names)
	return "unknown field; allowed here: " + strings.Join(names, ", ")
}

// jsonKind names the JSON type of a token, for messages.
func jsonKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '{' {
			return "an object"
		}
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "an unknown value"
}

// syntaxError reports malformed JSON with the byte offset (never the
// surrounding text, which may be a token digest).
func syntaxError(field string, err error) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		return &FileError{Field: field, Problem: fmt.Sprintf("not valid JSON (syntax error at byte %d)", se.Offset)}
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return &FileError{Field: field, Problem: "not valid JSON (unexpected end of file)"}
	}
	return &FileError{Field: field, Problem: "not valid JSON"}
}
