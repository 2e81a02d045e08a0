package sandbox

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// maxJSONBodyBytes bounds a JSON request body: the largest legitimate one
// (secure/data with a 512-byte ciphertext, a 4096-character key and
// metadata) is a few KiB.
const maxJSONBodyBytes = 1 << 20

// maxStringField bounds free-text fields (identifiers, names, metadata).
const maxStringField = 1024

// jsonObject is a request body decoded one level deep, so each field can be
// checked (and reported) separately.
type jsonObject map[string]json.RawMessage

// readJSONObject reads a bounded JSON object body. The Content-Type is not
// checked: the contract does not name a status for it, and curl's -d sends
// application/x-www-form-urlencoded, which a new user should not trip on.
func readJSONObject(r *http.Request) (jsonObject, *apiError) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxJSONBodyBytes+1))
	if err != nil {
		return nil, errInvalid("Request body could not be read completely")
	}
	if len(data) > maxJSONBodyBytes {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: errTypeTooLarge,
			Message: "Request body exceeds 1 MiB"}
	}
	return parseJSONObject(data, "Request body")
}

// parseJSONObject decodes data as one JSON object (what names the value in
// messages).
func parseJSONObject(data []byte, what string) (jsonObject, *apiError) {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return nil, errInvalid(what + " is empty; expected a JSON object")
	}
	if data[0] != '{' {
		return nil, errInvalid(what + " must be a JSON object")
	}
	var obj jsonObject
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&obj); err != nil {
		return nil, errInvalid(what + " is not valid JSON")
	}
	if dec.More() {
		return nil, errInvalid(what + " has trailing data after the JSON object")
	}
	return obj, nil
}

// has reports whether the field is present and not null.
func (o jsonObject) has(name string) bool {
	raw, ok := o[name]
	return ok && string(raw) != "null"
}

// str reads an optional string field (path names it in errors); "" when
// absent or null.
func (o jsonObject) str(name, path string, fe fieldErrors) string {
	if !o.has(name) {
		return ""
	}
	var s string
	if err := json.Unmarshal(o[name], &s); err != nil {
		fe.add(path, "must be a string")
		return ""
	}
	if len(s) > maxStringField {
		fe.add(path, "must be at most 1024 characters")
		return ""
	}
	return s
}

// required reads a string field that must be present and not blank.
func (o jsonObject) required(name, path string, fe fieldErrors) string {
	if !o.has(name) {
		fe.add(path, "is required")
		return ""
	}
	s := o.str(name, path, fe)
	if _, bad := fe[path]; !bad && strings.TrimSpace(s) == "" {
		fe.add(path, "must not be empty")
	}
	return s
}

// object reads a nested object field; nil when absent (required adds an
// error then).
func (o jsonObject) object(name string, required bool, fe fieldErrors) jsonObject {
	if !o.has(name) {
		if required {
			fe.add(name, "is required")
		}
		return nil
	}
	raw := bytes.TrimSpace(o[name])
	var obj jsonObject
	if len(raw) == 0 || raw[0] != '{' || json.Unmarshal(raw, &obj) != nil {
		fe.add(name, "must be an object")
		return nil
	}
	return obj
}

// metadata reads the optional backup metadata object.
func readMetadata(obj jsonObject, fe fieldErrors) BackupMetadata {
	if obj == nil {
		return BackupMetadata{}
	}
	return BackupMetadata{
		Description:      obj.str("description", "metadata.description", fe),
		ContentType:      obj.str("content_type", "metadata.content_type", fe),
		OriginalFilename: obj.str("original_filename", "metadata.original_filename", fe),
	}
}

// requiredLong reads a required string field with no length limit beyond
// the body's (base64 payloads).
func (o jsonObject) requiredLong(name string, fe fieldErrors) string {
	if !o.has(name) {
		fe.add(name, "is required")
		return ""
	}
	var s string
	if err := json.Unmarshal(o[name], &s); err != nil {
		fe.add(name, "must be a string")
		return ""
	}
	if s == "" {
		fe.add(name, "must not be empty")
	}
	return s
}
