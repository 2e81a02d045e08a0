package registry

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestOperatorReason(t *testing.T) {
	long := strings.Repeat("é", maxReasonLen) // 2 bytes each: the cut falls inside one
	tests := []struct {
		name, in, want string
	}{
		{"plain", "upstream timed out", "upstream timed out"},
		{"empty", "", ""},
		{"NUL", "a\x00b", "a\uFFFDb"},
		{"invalid UTF-8", "a\xffb", "a\uFFFDb"},
		{"exactly the limit", strings.Repeat("x", maxReasonLen), strings.Repeat("x", maxReasonLen)},
		{"over the limit", strings.Repeat("x", maxReasonLen+1), strings.Repeat("x", maxReasonLen)},
		{"cut on a character boundary", "x" + long, "x" + strings.Repeat("é", (maxReasonLen-1)/2)},
	}
	for _, tt := range tests {
		got := operatorReason(tt.in)
		if got != tt.want {
			t.Errorf("%s: got %d bytes %.40q…, want %d bytes %.40q…", tt.name, len(got), got, len(tt.want), tt.want)
		}
		if !utf8.ValidString(got) || len(got) > maxReasonLen {
			t.Errorf("%s: result is not valid UTF-8 within %d bytes", tt.name, maxReasonLen)
		}
	}
}
