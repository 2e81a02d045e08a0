package keycrypto

import (
	"bytes"
	"fmt"
	"slices"
	"unicode/utf16"
	"unicode/utf8"
)

// CanonicalJSON is the RFC 8785 (JCS) serialisation of a flat object of
// string values: keys sorted by UTF-16 code units, JCS string escaping.
//
// NOTE: encoding/json is not used: it escapes '<', '>', '&', U+2028 and
// U+2029, which JCS writes literally, so its bytes would not be the bytes
// the enclave signs.
func CanonicalJSON(fields map[string]string) ([]byte, error) {
	keys := make([]string, 0, len(fields))
	for k, v := range fields {
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("%w: a member name", ErrInvalidString)
		}
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("%w: the value of member %q", ErrInvalidString, k)
		}
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareUTF16)
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJCSString(&b, k)
		b.WriteByte(':')
		writeJCSString(&b, fields[k])
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// compareUTF16 orders strings by their UTF-16 code units, as JCS requires.
// It differs from Go's byte order only for characters above U+FFFF
// (surrogate pairs sort before U+E000..U+FFFF).
func compareUTF16(a, b string) int {
	return slices.Compare(utf16.Encode([]rune(a)), utf16.Encode([]rune(b)))
}

// writeJCSString writes s as a JSON string the way JCS (ECMAScript's
// JSON.stringify) does: only '"', '\\' and control characters are escaped,
// the latter as \b \f \n \r \t or \u00xx with lowercase hex; everything else
// is literal UTF-8.
func writeJCSString(b *bytes.Buffer, s string) {
	const hexDigits = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"':
			b.WriteString(`\"`)
		case c == '\\':
			b.WriteString(`\\`)
		case c == '\b':
			b.WriteString(`\b`)
		case c == '\f':
			b.WriteString(`\f`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hexDigits[c>>4])
			b.WriteByte(hexDigits[c&0xf])
		default:
			// Multi-byte UTF-8 passes through byte by byte: it was
			// validated, and JCS writes it literally.
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
