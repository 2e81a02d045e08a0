package auth_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/walletprovider/recoveryservice/service/auth"
)

func TestLoadCallersFileAcceptsTheExample(t *testing.T) {
	set, err := auth.LoadCallersFile(testCallersFile(t))
	if err != nil {
		t.Fatalf("LoadCallersFile: %v", err)
	}
	if set.Len() != 4 {
		t.Fatalf("Len = %d, want 4", set.Len())
	}
	tests := []struct {
		name string
		orgs []string
	}{
		{"wallet-api", []string{"org-1", "org-2"}},
		{"support-tool", []string{"*"}},
		{"batch-worker.internal", []string{"org-3"}},
		{"spiffe://test.example/support", []string{"org-1"}},
	}
	for _, tt := range tests {
		c, ok := set.Lookup(tt.name)
		if !ok {
			t.Errorf("Lookup(%q): not found", tt.name)
			continue
		}
		if c.Name != tt.name || !slices.Equal(c.Organisations, tt.orgs) {
			t.Errorf("Lookup(%q) = %+v, want organisations %v", tt.name, c, tt.orgs)
		}
	}
	if _, ok := set.Lookup("Wallet-API"); ok {
		t.Error("Lookup is case-insensitive; names must match exactly")
	}
}

func TestLoadCallersFileRejects(t *testing.T) {
	good := digestOf("good-token")
	other := digestOf("other-token")
	long := strings.Repeat("a", 129)
	tests := []struct {
		name      string
		content   string
		wantField string
		wantIn    string // substring of the problem
	}{
		{"empty file", ``, "", "unexpected end of file"},
		{"not JSON", `callers: []`, "", "syntax error at byte"},
		{"truncated", `{"callers": [`, "callers", "unexpected end of file"},
		{"top level array", `[]`, "", "must be an object, not an array"},
		{"top level null", `null`, "", "must be an object, not null"},
		{"trailing data", `{"callers":[{"name":"a","token_sha256":"` + good + `","organisations":["*"]}]} {}`, "", "unexpected data after the JSON object"},
		{"no callers field", `{}`, "callers", "lists no callers"},
		{"callers null", `{"callers": null}`, "callers", "must be an array, not null"},
		{"callers empty", `{"callers": []}`, "callers", "lists no callers"},
		{"callers object", `{"callers": {}}`, "callers", "must be an array, not an object"},
		{"unknown top-level field", `{"callers": [], "version": 2}`, "version", "unknown field; allowed here: callers"},
		{"field in the wrong case", `{"Callers": []}`, "Callers", `did you mean "callers"`},
		{"repeated top-level field", `{"callers": [], "callers": []}`, "callers", "appears more than once"},
		{"entry not an object", `{"callers": ["wallet-api"]}`, "callers[0]", "must be an object, not a string"},
		{"entry null", `{"callers": [null]}`, "callers[0]", "must be an object, not null"},
		{"unknown entry field", `{"callers": [{"name":"a","token":"secret","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].token", "unknown field; allowed here: max_concurrent_calls, name, organisations, rate_burst, rate_limit, roles, token_sha256"},
		{"entry field in the wrong case", `{"callers": [{"Name":"a"}]}`, "callers[0].Name", `did you mean "name"`},
		{"repeated entry field", `{"callers": [{"name":"a","name":"b","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "appears more than once"},
		{"name missing", `{"callers": [{"token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "required"},
		{"name empty", `{"callers": [{"name":"","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "required"},
		{"name a number", `{"callers": [{"name":7,"token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "must be a string, not a number"},
		{"name with a space", `{"callers": [{"name":"wallet api","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "only letters, digits"},
		{"name starting with a dash", `{"callers": [{"name":"-api","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "must start with a letter or digit"},
		{"name too long", `{"callers": [{"name":"` + long + `","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[0].name", "longer than 128"},
		{"name repeated", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["*"]},{"name":"a","token_sha256":"` + other + `","organisations":["*"]}]}`, "callers[1].name", `"a" is already the name of callers[0]`},
		{"token_sha256 missing", `{"callers": [{"name":"a","organisations":["*"]}]}`, "callers[0].token_sha256", "required"},
		{"token_sha256 null", `{"callers": [{"name":"a","token_sha256":null,"organisations":["*"]}]}`, "callers[0].token_sha256", "must be a string, not null"},
		{"token_sha256 uppercase", `{"callers": [{"name":"a","token_sha256":"` + strings.ToUpper(good) + `","organisations":["*"]}]}`, "callers[0].token_sha256", "must be lowercase hex"},
		{"token_sha256 too short", `{"callers": [{"name":"a","token_sha256":"` + good[:63] + `","organisations":["*"]}]}`, "callers[0].token_sha256", "64 lowercase hex"},
		{"token_sha256 not hex", `{"callers": [{"name":"a","token_sha256":"` + "g" + good[1:] + `","organisations":["*"]}]}`, "callers[0].token_sha256", "64 lowercase hex"},
		{"token_sha256 a raw token", `{"callers": [{"name":"a","token_sha256":"good-token","organisations":["*"]}]}`, "callers[0].token_sha256", "never the token itself"},
		{"token_sha256 of the empty token", `{"callers": [{"name":"a","token_sha256":"` + digestOf("") + `","organisations":["*"]}]}`, "callers[0].token_sha256", "empty token"},
		{"token_sha256 repeated", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["*"]},{"name":"b","token_sha256":"` + good + `","organisations":["*"]}]}`, "callers[1].token_sha256", "same token as callers[0]"},
		{"organisations missing", `{"callers": [{"name":"a","token_sha256":"` + good + `"}]}`, "callers[0].organisations", "at least one customer id"},
		{"organisations empty", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":[]}]}`, "callers[0].organisations", "at least one customer id"},
		{"organisations null", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":null}]}`, "callers[0].organisations", "must be an array, not null"},
		{"organisations a string", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":"*"}]}`, "callers[0].organisations", "must be an array, not a string"},
		{"organisation a number", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":[1]}]}`, "callers[0].organisations[0]", "must be a string, not a number"},
		{"organisation empty", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["org-1",""]}]}`, "callers[0].organisations[1]", "empty"},
		{"organisation with a space", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["org 1"]}]}`, "callers[0].organisations[0]", `must be "*" or a customer id`},
		{"organisation glob", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["org-*"]}]}`, "callers[0].organisations[0]", `must be "*" or a customer id`},
		{"organisation too long", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["` + long + `"]}]}`, "callers[0].organisations[0]", "longer than 128"},
		{"organisation repeated", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["org-1","*","org-1"]}]}`, "callers[0].organisations[2]", "repeats callers[0].organisations[0]"},
		{"rate_limit negative", limitsEntry(good, `"rate_limit":-1,"rate_burst":1`), "callers[0].rate_limit", "from 0 (unlimited)"},
		{"rate_limit too large", limitsEntry(good, `"rate_limit":1e7,"rate_burst":1`), "callers[0].rate_limit", "from 0 (unlimited)"},
		{"rate_limit a string", limitsEntry(good, `"rate_limit":"50","rate_burst":1`), "callers[0].rate_limit", "must be a number, not a string"},
		{"rate_limit null", limitsEntry(good, `"rate_limit":null`), "callers[0].rate_limit", "must be a number, not null"},
		{"rate_limit without rate_burst", limitsEntry(good, `"rate_limit":5`), "callers[0].rate_limit", "needs rate_burst"},
		{"rate_burst without rate_limit", limitsEntry(good, `"rate_burst":5`), "callers[0].rate_burst", "needs a rate_limit above 0"},
		{"rate_burst with rate_limit 0", limitsEntry(good, `"rate_limit":0,"rate_burst":5`), "callers[0].rate_burst", "needs a rate_limit above 0"},
		{"rate_burst 0", limitsEntry(good, `"rate_limit":5,"rate_burst":0`), "callers[0].rate_burst", "whole number from 1"},
		{"rate_burst a fraction", limitsEntry(good, `"rate_limit":5,"rate_burst":1.5`), "callers[0].rate_burst", "whole number from 1"},
		{"rate_burst an exponent", limitsEntry(good, `"rate_limit":5,"rate_burst":1e3`), "callers[0].rate_burst", "whole number from 1"},
		{"max_concurrent_calls negative", limitsEntry(good, `"max_concurrent_calls":-1`), "callers[0].max_concurrent_calls", "whole number from 0"},
		{"max_concurrent_calls too large", limitsEntry(good, `"max_concurrent_calls":1000001`), "callers[0].max_concurrent_calls", "whole number from 0"},
		{"max_concurrent_calls repeated", limitsEntry(good, `"max_concurrent_calls":1,"max_concurrent_calls":2`), "callers[0].max_concurrent_calls", "appears more than once"},
		{"roles a string", limitsEntry(good, `"roles":"operator"`), "callers[0].roles", "must be an array, not a string"},
		{"roles null", limitsEntry(good, `"roles":null`), "callers[0].roles", "must be an array, not null"},
		{"role unknown", limitsEntry(good, `"roles":["admin"]`), "callers[0].roles[0]", "unknown role; the roles are: operator"},
		{"role in the wrong case", limitsEntry(good, `"roles":["Operator"]`), "callers[0].roles[0]", "unknown role"},
		{"role repeated", limitsEntry(good, `"roles":["operator","operator"]`), "callers[0].roles[1]", "repeats callers[0].roles[0]"},
		{"second entry bad", `{"callers": [{"name":"a","token_sha256":"` + good + `","organisations":["*"]},{"name":"b","token_sha256":"` + other + `","organisations":["ok","bad org"]}]}`, "callers[1].organisations[1]", `must be "*" or a customer id`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeCallersFile(t, tt.content)
			set, err := auth.LoadCallersFile(path)
			if err == nil {
				t.Fatalf("LoadCallersFile accepted it (%d callers)", set.Len())
			}
			var fe *auth.FileError
			if !errors.As(err, &fe) {
				t.Fatalf("error %T %q is not a *FileError", err, err)
			}
			if fe.File != path || fe.Field != tt.wantField || !strings.Contains(fe.Problem, tt.wantIn) {
				t.Errorf("got File=%q Field=%q Problem=%q\nwant File=%q Field=%q Problem containing %q", fe.File, fe.Field, fe.Problem, path, tt.wantField, tt.wantIn)
			}
			for _, secret := range []string{good, other, strings.ToUpper(good), "good-token"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("error %q quotes a token or digest from the file", err)
				}
			}
		})
	}
}

func TestLoadCallersFileRefusesAccessibleFiles(t *testing.T) {
	valid := callersJSON(t, entry("a", "good-token", "*"))
	for _, mode := range []os.FileMode{0o644, 0o620, 0o604, 0o602, 0o660, 0o700 | 0o001, 0o650} {
		t.Run(mode.String(), func(t *testing.T) {
			path := writeCallersFile(t, valid)
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			_, err := auth.LoadCallersFile(path)
			var fe *auth.FileError
			if !errors.As(err, &fe) || !strings.Contains(fe.Problem, "chmod 600") {
				t.Fatalf("mode %v: error %v, want a *FileError telling to chmod 600", mode, err)
			}
		})
	}
	for _, mode := range []os.FileMode{0o600, 0o400} {
		path := writeCallersFile(t, valid)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.LoadCallersFile(path); err != nil {
			t.Errorf("mode %v: %v", mode, err)
		}
	}
}

// TestLoadCallersFileGroupReadOnlyWhenRootOwns: a group-readable callers
// file (a Kubernetes secret volume with an fsGroup: root-owned, 0440) is
// accepted when root owns it, and refused when anyone else does.
func TestLoadCallersFileGroupReadOnlyWhenRootOwns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test chowns files: run it as root (make test does, in CI)")
	}
	valid := callersJSON(t, entry("a", "good-token", "*"))
	for _, mode := range []os.FileMode{0o440, 0o640} {
		path := writeCallersFile(t, valid)
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(path, 0, 65532); err != nil {
			t.Fatal(err)
		}
		if _, err := auth.LoadCallersFile(path); err != nil {
			t.Errorf("root-owned, mode %v: %v", mode, err)
		}
		if err := os.Chown(path, 65532, 65532); err != nil {
			t.Fatal(err)
		}
		var fe *auth.FileError
		if _, err := auth.LoadCallersFile(path); !errors.As(err, &fe) || !strings.Contains(fe.Problem, "root owns it") {
			t.Errorf("owned by 65532, mode %v: %v, want a *FileError", mode, err)
		}
	}
}

func TestLoadCallersFileRefusesOtherFiles(t *testing.T) {
	dir := t.TempDir()
	large := filepath.Join(dir, "large.json")
	if err := os.WriteFile(large, []byte(strings.Repeat(" ", auth.MaxCallersFileSize)+callersJSON(t, entry("a", "good-token", "*"))), 0o600); err != nil {
		t.Fatal(err)
	}
	private := filepath.Join(dir, "private")
	if err := os.Mkdir(private, 0o700); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		wantIn string
	}{
		{"missing", filepath.Join(dir, "missing.json"), "cannot open: open: no such file or directory"},
		{"directory", private, "not a regular file"},
		{"too large", large, "larger than 1048576 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := auth.LoadCallersFile(tt.path)
			var fe *auth.FileError
			if !errors.As(err, &fe) || fe.File != tt.path || !strings.Contains(fe.Problem, tt.wantIn) {
				t.Fatalf("error %v, want a *FileError for %s containing %q", err, tt.path, tt.wantIn)
			}
		})
	}
}

func TestLoadCallersFileFollowsSymlinks(t *testing.T) {
	// Kubernetes mounts secrets as symlinks into a ..data directory; the
	// target's permissions are what counts.
	target := testCallersFile(t)
	link := filepath.Join(t.TempDir(), "callers.json")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	set, err := auth.LoadCallersFile(link)
	if err != nil || set.Len() != 4 {
		t.Fatalf("via symlink: %v", err)
	}
	if err := os.Chmod(target, 0o644); err != nil { //nolint:gosec // G302: world-readable on purpose, to see it refused
		t.Fatal(err)
	}
	if _, err := auth.LoadCallersFile(link); err == nil {
		t.Fatal("a symlink to a world-readable file was accepted")
	}
}

// limitsEntry is a callers file of one valid entry plus the limit fields
// given (JSON members without braces).
func limitsEntry(digest, limits string) string {
	return `{"callers": [{"name":"a","token_sha256":"` + digest + `","organisations":["*"],` + limits + `}]}`
}

// TestLoadCallersFileLimits: the optional limits are read as written, and an
// entry without them leaves every one at recoveryd's default (nil).
func TestLoadCallersFileLimits(t *testing.T) {
	content := `{"callers": [
	  {"name":"capped","token_sha256":"` + digestOf("t1") + `","organisations":["*"],"rate_limit":0.5,"rate_burst":3,"max_concurrent_calls":2},
	  {"name":"unlimited","token_sha256":"` + digestOf("t2") + `","organisations":["*"],"rate_limit":0,"max_concurrent_calls":0},
	  {"name":"default","token_sha256":"` + digestOf("t3") + `","organisations":["*"]}
	]}`
	set, err := auth.LoadCallersFile(writeCallersFile(t, content))
	if err != nil {
		t.Fatal(err)
	}
	capped, _ := set.Lookup("capped")
	if l := capped.Limits; l.RateLimit == nil || *l.RateLimit != 0.5 || l.RateBurst == nil || *l.RateBurst != 3 || l.MaxConcurrentCalls == nil || *l.MaxConcurrentCalls != 2 {
		t.Errorf("capped: limits %s, want rate 0.5, burst 3, concurrent 2", describeLimits(l))
	}
	unlimited, _ := set.Lookup("unlimited")
	if l := unlimited.Limits; l.RateLimit == nil || *l.RateLimit != 0 || l.RateBurst != nil || l.MaxConcurrentCalls == nil || *l.MaxConcurrentCalls != 0 {
		t.Errorf("unlimited: limits %s, want rate 0, no burst, concurrent 0", describeLimits(l))
	}
	def, _ := set.Lookup("default")
	if l := def.Limits; l.RateLimit != nil || l.RateBurst != nil || l.MaxConcurrentCalls != nil {
		t.Errorf("default: limits %s, want none set", describeLimits(l))
	}
}

func TestLoadCallersFileRoles(t *testing.T) {
	content := `{"callers": [
	  {"name":"ops","token_sha256":"` + digestOf("t1") + `","organisations":["org-1"],"roles":["operator"]},
	  {"name":"none","token_sha256":"` + digestOf("t2") + `","organisations":["*"],"roles":[]},
	  {"name":"absent","token_sha256":"` + digestOf("t3") + `","organisations":["*"]}
	]}`
	set, err := auth.LoadCallersFile(writeCallersFile(t, content))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"ops": true, "none": false, "absent": false} {
		c, _ := set.Lookup(name)
		if got := c.HasRole(auth.RoleOperator); got != want {
			t.Errorf("%s: HasRole(operator) = %v, want %v", name, got, want)
		}
	}
}

// describeLimits prints l's set fields, for failure messages.
func describeLimits(l auth.Limits) string {
	var b strings.Builder
	if l.RateLimit != nil {
		fmt.Fprintf(&b, "rate=%v ", *l.RateLimit)
	}
	if l.RateBurst != nil {
		fmt.Fprintf(&b, "burst=%d ", *l.RateBurst)
	}
	if l.MaxConcurrentCalls != nil {
		fmt.Fprintf(&b, "concurrent=%d", *l.MaxConcurrentCalls)
	}
	return "{" + strings.TrimSpace(b.String()) + "}"
}
