package keycrypto_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/walletprovider/recoveryservice/keycrypto"
)

func TestCanonicalJSON(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   map[string]string
		want string
	}{
		{"empty object", map[string]string{}, `{}`},
		{"nil map", nil, `{}`},
		{"keys sorted", map[string]string{"public_key": "3082", "key_id": "k1", "external_customer_id": "c"},
			`{"external_customer_id":"c","key_id":"k1","public_key":"3082"}`},
		// RFC 8785 §3.2.3's sorting example: UTF-16 code units, so U+1F600
		// (D83D DE00) sorts before U+FB33, unlike UTF-8 byte order.
		{"RFC 8785 sort order", map[string]string{
			"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
			"1": "One", "\U0001f600": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis",
		}, "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u0080\":\"Control\",\"\u00f6\":\"Latin Small Letter O With Diaeresis\"," +
			"\"\u20ac\":\"Euro Sign\",\"\U0001f600\":\"Emoji: Grinning Face\",\"\ufb33\":\"Hebrew Letter Dalet With Dagesh\"}"},
		{"HTML characters stay literal", map[string]string{"a": "<b>&</b>"}, `{"a":"<b>&</b>"}`},
		{"line and paragraph separators literal", map[string]string{"a": "\u2028\u2029"}, "{\"a\":\"\u2028\u2029\"}"},
		{"short escapes", map[string]string{"a": "\b\f\n\r\t"}, `{"a":"\b\f\n\r\t"}`},
		{"other controls as lowercase \\u00xx", map[string]string{"a": "\x00\x01\x0b\x1f"}, `{"a":"\u0000\u0001\u000b\u001f"}`},
		{"quote and backslash", map[string]string{`k"\`: `v"\`}, `{"k\"\\":"v\"\\"}`},
		{"DEL, slash and non-ASCII literal", map[string]string{"a": "\x7f/é😀"}, "{\"a\":\"\x7f/é😀\"}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keycrypto.CanonicalJSON(tc.in)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
			var back map[string]string
			if err := json.Unmarshal(got, &back); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			if len(back) != len(tc.in) {
				t.Fatalf("round trip has %d members, want %d", len(back), len(tc.in))
			}
			for k, v := range tc.in {
				if back[k] != v {
					t.Fatalf("member %q changed in the round trip", k)
				}
			}
		})
	}
}

// TestCanonicalJSONIsNotEncodingJSON documents why encoding/json is not
// used: it escapes characters JCS writes literally.
func TestCanonicalJSONIsNotEncodingJSON(t *testing.T) {
	in := map[string]string{"a": "<&>"}
	std, _ := json.Marshal(in)
	ours, _ := keycrypto.CanonicalJSON(in)
	if string(std) == string(ours) {
		t.Fatalf("encoding/json and JCS agree on %s; the test no longer shows the difference", ours)
	}
}

func TestCanonicalJSONRejectsInvalidUTF8(t *testing.T) {
	for _, in := range []map[string]string{{"a": "\xff"}, {"\xc3": "b"}} {
		if _, err := keycrypto.CanonicalJSON(in); !errors.Is(err, keycrypto.ErrInvalidString) {
			t.Fatalf("err = %v, want ErrInvalidString", err)
		}
	}
}
