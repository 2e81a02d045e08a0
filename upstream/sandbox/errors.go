package sandbox

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Error types carried in ErrorResponse.error. The upstream documents only
// the body's shape; these names are the emulator's and stay stable so tests
// and the adapter can match on them.
const (
	errTypeInvalid            = "invalid_request"
	errTypeVerification       = "verification_failed"
	errTypeUnauthorized       = "unauthorized"
	errTypeForbidden          = "forbidden"
	errTypeNotFound           = "not_found"
	errTypeMethodNotAllowed   = "method_not_allowed"
	errTypeConflict           = "conflict"
	errTypeTooLarge           = "payload_too_large"
	errTypeUnsupportedMedia   = "unsupported_media_type"
	errTypeRateLimited        = "rate_limited"
	errTypeInternal           = "internal_error"
	messageAlreadyAssigned    = "Key already assigned for this user and organisation"
	messageValidationFailed   = "Invalid request parameters"
	messageInternal           = "Internal server error"
	contentTypeJSON           = "application/json"
	contentTypeOctetStream    = "application/octet-stream"
	contentTypePEM            = "application/x-pem-file"
	headerRetryAfter          = "Retry-After"
	headerWWWAuthenticate     = "WWW-Authenticate"
	headerCacheControl        = "Cache-Control"
	jwksCacheControl          = "max-age=600, must-revalidate"
	maxErrorFieldsPerResponse = 32
)

// apiError is an error answer: an HTTP status and the contract's
// ErrorResponse body {"error","message","fields"}.
type apiError struct {
	Status  int               `json:"-"`
	Type    string            `json:"error"`
	Message string            `json:"message"`
	Fields  map[string]string `json:"fields,omitempty"`
	// RetryAfter, in whole seconds, is sent as the Retry-After header.
	RetryAfter int `json:"-"`
}

func (e *apiError) Error() string { return e.Type + ": " + e.Message }

// fieldErrors collects validation problems keyed by field path, so one 400
// names every bad field at once.
type fieldErrors map[string]string

// add records the first problem seen for field.
func (f fieldErrors) add(field, problem string) {
	if _, seen := f[field]; !seen && len(f) < maxErrorFieldsPerResponse {
		f[field] = problem
	}
}

// err is nil when no field is bad, else a 400 naming each bad field.
func (f fieldErrors) err() *apiError {
	if len(f) == 0 {
		return nil
	}
	return &apiError{Status: http.StatusBadRequest, Type: errTypeInvalid, Message: messageValidationFailed, Fields: f}
}

func errInvalid(message string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: errTypeInvalid, Message: message}
}

func errInvalidField(field, problem string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: errTypeInvalid, Message: messageValidationFailed,
		Fields: map[string]string{field: problem}}
}

func errVerification(message string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: errTypeVerification, Message: message}
}

func errNotFound(message string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: errTypeNotFound, Message: message}
}

func errInternal() *apiError {
	return &apiError{Status: http.StatusInternalServerError, Type: errTypeInternal, Message: messageInternal}
}

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Every value written here is built from plain structs; a failure is
		// a programming error, answered as a bare 500.
		http.Error(w, messageInternal, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentTypeJSON)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// writeError answers with e's status, headers and ErrorResponse body.
func writeError(w http.ResponseWriter, e *apiError) {
	switch e.Status {
	case http.StatusUnauthorized:
		w.Header().Set(headerWWWAuthenticate, `Bearer realm="sandbox"`)
	case http.StatusTooManyRequests:
		w.Header().Set(headerRetryAfter, strconv.Itoa(e.RetryAfter))
	case http.StatusRequestEntityTooLarge:
		// NOTE: closing the connection makes net/http answer at once;
		// otherwise it first reads up to 256 KiB more of the unread upload,
		// and a client that streams slowly sees the 413 late.
		w.Header().Set("Connection", "close")
	}
	writeJSON(w, e.Status, e)
}
