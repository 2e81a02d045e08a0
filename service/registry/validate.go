package registry

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// maxTextLen bounds every free-text column, so one request cannot bloat the
// database; identifiers upstream accepts are far shorter.
const maxTextLen = 1024

// checkText refuses text the backends would store differently (PostgreSQL
// rejects NUL and invalid UTF-8, SQLite keeps them) and oversized text. The
// message names the field, never its value.
func checkText(field, v string, required bool) error {
	switch {
	case required && v == "":
		return fmt.Errorf("%w: %s is empty", ErrInvalidArgument, field)
	case len(v) > maxTextLen:
		return fmt.Errorf("%w: %s is longer than %d bytes", ErrInvalidArgument, field, maxTextLen)
	case !utf8.ValidString(v):
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidArgument, field)
	case strings.ContainsRune(v, 0):
		return fmt.Errorf("%w: %s contains a NUL character", ErrInvalidArgument, field)
	}
	return nil
}

// lowerHex returns v in lowercase when it is non-empty, even-length hex (of
// exactly wantLen characters when wantLen > 0).
func lowerHex(field, v string, wantLen int) (string, error) {
	if v == "" {
		return "", fmt.Errorf("%w: %s is empty", ErrInvalidArgument, field)
	}
	if wantLen > 0 && len(v) != wantLen {
		return "", fmt.Errorf("%w: %s must be %d hex characters", ErrInvalidArgument, field, wantLen)
	}
	if len(v)%2 != 0 {
		return "", fmt.Errorf("%w: %s has an odd number of hex characters", ErrInvalidArgument, field)
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return "", fmt.Errorf("%w: %s is not hex", ErrInvalidArgument, field)
		}
	}
	return strings.ToLower(v), nil
}

// checkToken refuses an empty reservation token before any SQL runs.
func checkToken(token string) error {
	if token == "" {
		return fmt.Errorf("%w: reservation token is empty", ErrInvalidArgument)
	}
	return nil
}

// maxReasonLen bounds a failure reason; longer ones are cut.
const maxReasonLen = 2048

// operatorReason makes a failure reason storable on both backends instead of
// refusing it: Fail* is the path that keeps an unknown outcome on record, so
// a long or odd error text must not make it fail. Invalid UTF-8 and NUL
// become U+FFFD and the text is cut, on a character boundary, to
// maxReasonLen bytes.
func operatorReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	reason = strings.ReplaceAll(reason, "\x00", "\uFFFD")
	if len(reason) <= maxReasonLen {
		return reason
	}
	cut := maxReasonLen
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}
