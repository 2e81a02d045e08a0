package auth

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
)

// MaxCallersFileSize bounds how much of a callers file is read: a file this
// large is a mistake (a log, a binary), not a list of callers.
const MaxCallersFileSize = 1 << 20

var (
	// callerNamePattern is the shape of a caller name: it ends up in logs,
	// traces and every assignment and backup record, so it is kept plain.
	// It admits URI-like names so that a certificate's whole URI SAN can be
	// a name.
	callerNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$`)
	// organisationPattern is the API's customer_id rule (recovery.v1
	// Organisation.customer_id), so every listed organisation is one a
	// request can name.
	organisationPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._:@+/=-]{0,127}$`)
	// tokenDigestPattern is a SHA-256 digest in lowercase hex, as printed by
	// sha256sum.
	tokenDigestPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// emptyTokenDigest is the SHA-256 of the empty string: a digest an operator
// gets by hashing an unset variable, which no bearer token can match.
var emptyTokenDigest = sha256.Sum256(nil)

// FileError is a problem with a callers file, naming the file, the field
// (e.g. "callers[2].token_sha256") and what is wrong in words a person can
// act on. It never carries a token digest from the file.
type FileError struct {
	// File is the path of the callers file.
	File string
	// Field locates the problem: "" for the file as a whole, otherwise a
	// JSON path such as "callers[2].organisations[0]".
	Field string
	// Problem says what is wrong and, where it helps, how to fix it.
	Problem string
}

// Error formats the problem as "callers file <path>: <field>: <problem>".
func (e *FileError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("callers file %s: %s", e.File, e.Problem)
	}
	return fmt.Sprintf("callers file %s: %s: %s", e.File, e.Field, e.Problem)
}

// CallerSet is the validated content of one callers file. It is immutable:
// a reload builds a new set and swaps it in whole.
type CallerSet struct {
	callers []Caller
	// digests[i] is the SHA-256 of callers[i]'s bearer token.
	digests [][sha256.Size]byte
	byName  map[string]int
}

// Len is the number of callers in the set.
func (s *CallerSet) Len() int { return len(s.callers) }

// Lookup returns the caller with the given name.
func (s *CallerSet) Lookup(name string) (Caller, bool) {
	i, ok := s.byName[name]
	if !ok {
		return Caller{}, false
	}
	return s.callers[i], true
}

// callersFileJSON is the wire shape of a callers file.
type callersFileJSON struct {
	Callers []callerJSON `json:"callers"`
}

// callerJSON is one entry of a callers file.
type callerJSON struct {
	Name          string   `json:"name"`
	TokenSHA256   string   `json:"token_sha256"`
	Organisations []string `json:"organisations"`
	// The limits are json.Number so that a whole number is told from a
	// fraction, and a pointer so that an absent field is told from 0.
	RateLimit          *json.Number `json:"rate_limit"`
	RateBurst          *json.Number `json:"rate_burst"`
	MaxConcurrentCalls *json.Number `json:"max_concurrent_calls"`
	// Roles is optional: absent means none.
	Roles []string `json:"roles"`
}

// privateEnough applies PostgreSQL's rule for key files: nobody but the
// owner may write it or anyone else read it, except that its group may read
// it when root owns it (root could read it anyway, and a group given to the
// service by its deployment, such as a Kubernetes fsGroup, is deliberate).
func privateEnough(info os.FileInfo) bool {
	perm := info.Mode().Perm()
	switch {
	case perm&0o077 == 0:
		return true
	case perm&0o077 != 0o040:
		return false
	}
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0
}

// LoadCallersFile reads and validates the callers file at path. It refuses
// (with a *FileError) a file that others may access or its group write (or
// read, unless root owns it: see privateEnough), is not
// a regular file, is larger than MaxCallersFileSize, is not exactly one JSON
// object of the documented shape (field names are case-sensitive; unknown
// and repeated fields are errors), lists no callers, or has an entry whose
// name, token_sha256 or organisations break the rules in the package doc.
// Symbolic links are followed and the target's permissions are checked.
func LoadCallersFile(path string) (*CallerSet, error) {
	f, err := os.Open(path) //nolint:gosec // the path is operator configuration.
	if err != nil {
		return nil, &FileError{File: path, Problem: fmt.Sprintf("cannot open: %v", unwrapPathError(err))}
	}
	defer f.Close() // read-only: a failed close loses nothing
	info, err := f.Stat()
	if err != nil {
		return nil, &FileError{File: path, Problem: fmt.Sprintf("cannot stat: %v", unwrapPathError(err))}
	}
	if !info.Mode().IsRegular() {
		return nil, &FileError{File: path, Problem: "not a regular file"}
	}
	if perm := info.Mode().Perm(); !privateEnough(info) {
		return nil, &FileError{File: path, Problem: fmt.Sprintf(
			"permissions %04o let group or others access it; it lists who may handle recovery material, "+
				"so make it readable by the service user only (chmod 600), or by its group only when root owns it "+
				"(chmod 440, as a Kubernetes secret volume with an fsGroup mounts it)", perm)}
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxCallersFileSize+1))
	if err != nil {
		return nil, &FileError{File: path, Problem: fmt.Sprintf("cannot read: %v", unwrapPathError(err))}
	}
	if len(data) > MaxCallersFileSize {
		return nil, &FileError{File: path, Problem: fmt.Sprintf("larger than %d bytes", MaxCallersFileSize)}
	}
	set, err := parseCallers(data)
	if err != nil {
		if fe, ok := err.(*FileError); ok { //nolint:errorlint // parseCallers returns it unwrapped.
			fe.File = path
		}
		return nil, err
	}
	return set, nil
}

// unwrapPathError drops the path from an *os.PathError: FileError already
// names the file.
func unwrapPathError(err error) error {
	if pe, ok := err.(*os.PathError); ok { //nolint:errorlint // os returns it unwrapped.
		return fmt.Errorf("%s: %w", pe.Op, pe.Err)
	}
	return err
}

// parseCallers validates data as a callers file. Errors are *FileError
// without File.
func parseCallers(data []byte) (*CallerSet, error) {
	if err := checkShape(data); err != nil {
		return nil, err
	}
	var doc callersFileJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		// NOTE: checkShape has already checked every type and field, so
		// this is unreachable for any input it accepted; keep a clear error.
		return nil, &FileError{Problem: fmt.Sprintf("not a valid callers file: %v", err)}
	}
	if len(doc.Callers) == 0 {
		return nil, &FileError{Field: "callers", Problem: "lists no callers; to run without caller authentication, configure no callers file"}
	}
	set := &CallerSet{
		callers: make([]Caller, 0, len(doc.Callers)),
		digests: make([][sha256.Size]byte, 0, len(doc.Callers)),
		byName:  make(map[string]int, len(doc.Callers)),
	}
	digestOwner := make(map[[sha256.Size]byte]int, len(doc.Callers))
	for i, entry := range doc.Callers {
		field := fmt.Sprintf("callers[%d]", i)
		if err := checkName(field+".name", entry.Name); err != nil {
			return nil, err
		}
		if first, dup := set.byName[entry.Name]; dup {
			return nil, &FileError{Field: field + ".name", Problem: fmt.Sprintf("%q is already the name of callers[%d]; names must be unique", entry.Name, first)}
		}
		digest, err := parseTokenDigest(field+".token_sha256", entry.TokenSHA256)
		if err != nil {
			return nil, err
		}
		if first, dup := digestOwner[digest]; dup {
			return nil, &FileError{Field: field + ".token_sha256", Problem: fmt.Sprintf("same token as callers[%d]; every caller needs its own token", first)}
		}
		if err := checkOrganisations(field+".organisations", entry.Organisations); err != nil {
			return nil, err
		}
		limits, err := parseLimits(field, entry)
		if err != nil {
			return nil, err
		}
		if err := checkRoles(field+".roles", entry.Roles); err != nil {
			return nil, err
		}
		set.byName[entry.Name] = len(set.callers)
		digestOwner[digest] = len(set.callers)
		set.callers = append(set.callers, Caller{Name: entry.Name, Organisations: entry.Organisations, Limits: limits, Roles: entry.Roles})
		set.digests = append(set.digests, digest)
	}
	return set, nil
}

// checkName validates a caller name.
func checkName(field, name string) error {
	switch {
	case name == "":
		return &FileError{Field: field, Problem: "required"}
	case len(name) > 128:
		return &FileError{Field: field, Problem: "longer than 128 characters"}
	case !callerNamePattern.MatchString(name):
		return &FileError{Field: field, Problem: "must start with a letter or digit and contain only letters, digits and . _ : / -"}
	}
	return nil
}

// parseTokenDigest validates and decodes a token_sha256 value. Problems
// never quote the value.
func parseTokenDigest(field, value string) ([sha256.Size]byte, error) {
	var digest [sha256.Size]byte
	switch {
	case value == "":
		return digest, &FileError{Field: field, Problem: "required (the SHA-256 of the caller's token, e.g. `printf %s \"$TOKEN\" | sha256sum`)"}
	case tokenDigestPattern.MatchString(strings.ToLower(value)) && !tokenDigestPattern.MatchString(value):
		return digest, &FileError{Field: field, Problem: "must be lowercase hex"}
	case !tokenDigestPattern.MatchString(value):
		return digest, &FileError{Field: field, Problem: "must be 64 lowercase hex characters (a SHA-256 digest of the token, never the token itself)"}
	}
	if _, err := hex.Decode(digest[:], []byte(value)); err != nil {
		return digest, &FileError{Field: field, Problem: "must be 64 lowercase hex characters"}
	}
	if digest == emptyTokenDigest {
		return digest, &FileError{Field: field, Problem: "is the SHA-256 of an empty token; hash the real token"}
	}
	return digest, nil
}

// checkOrganisations validates a caller's organisations list.
func checkOrganisations(field string, orgs []string) error {
	if len(orgs) == 0 {
		return &FileError{Field: field, Problem: fmt.Sprintf("required: at least one customer id, or %q for all", AllOrganisations)}
	}
	seen := make(map[string]int, len(orgs))
	for j, org := range orgs {
		item := fmt.Sprintf("%s[%d]", field, j)
		if first, dup := seen[org]; dup {
			return &FileError{Field: item, Problem: fmt.Sprintf("repeats %s[%d]", field, first)}
		}
		seen[org] = j
		switch {
		case org == AllOrganisations:
		case org == "":
			return &FileError{Field: item, Problem: "empty; use a customer id or \"*\""}
		case len(org) > 128:
			return &FileError{Field: item, Problem: "longer than 128 characters"}
		case !organisationPattern.MatchString(org):
			return &FileError{Field: item, Problem: "must be \"*\" or a customer id: a letter or digit, then letters, digits and . _ : @ + / = -"}
		}
	}
	return nil
}

// checkRoles validates a caller's optional roles list: known roles only,
// each at most once, so that a typo never silently grants nothing (or a
// reader of the file believes it grants something).
func checkRoles(field string, roles []string) error {
	seen := make(map[string]int, len(roles))
	for j, role := range roles {
		item := fmt.Sprintf("%s[%d]", field, j)
		if first, dup := seen[role]; dup {
			return &FileError{Field: item, Problem: fmt.Sprintf("repeats %s[%d]", field, first)}
		}
		seen[role] = j
		if !slices.Contains(knownRoles, role) {
			return &FileError{Field: item, Problem: fmt.Sprintf("unknown role; the roles are: %s", strings.Join(knownRoles, ", "))}
		}
	}
	return nil
}

// MaxLimit bounds every limit in a callers file: a larger value is a typo,
// and no caller could tell it from unlimited (0).
const MaxLimit = 1_000_000

// parseLimits validates an entry's optional rate_limit, rate_burst and
// max_concurrent_calls. rate_limit and rate_burst go together: a rate with
// the default burst (or the reverse) would make the entry mean different
// things as the flags change, so an entry sets both, or rate_limit 0 alone.
func parseLimits(field string, entry callerJSON) (Limits, error) {
	var l Limits
	if entry.RateLimit != nil {
		rate, err := strconv.ParseFloat(entry.RateLimit.String(), 64)
		if err != nil || math.IsNaN(rate) || rate < 0 || rate > MaxLimit {
			return l, &FileError{Field: field + ".rate_limit", Problem: fmt.Sprintf("must be calls per second from 0 (unlimited) to %d, e.g. 50 or 0.5", MaxLimit)}
		}
		l.RateLimit = &rate
	}
	if entry.RateBurst != nil {
		burst, err := wholeNumber(field+".rate_burst", *entry.RateBurst, 1)
		if err != nil {
			return l, err
		}
		l.RateBurst = &burst
	}
	switch {
	case l.RateBurst != nil && (l.RateLimit == nil || *l.RateLimit == 0):
		return l, &FileError{Field: field + ".rate_burst", Problem: "needs a rate_limit above 0 in the same entry"}
	case l.RateLimit != nil && *l.RateLimit > 0 && l.RateBurst == nil:
		return l, &FileError{Field: field + ".rate_limit", Problem: "needs rate_burst (calls allowed at once, at least 1) in the same entry"}
	}
	if entry.MaxConcurrentCalls != nil {
		n, err := wholeNumber(field+".max_concurrent_calls", *entry.MaxConcurrentCalls, 0)
		if err != nil {
			return l, err
		}
		l.MaxConcurrentCalls = &n
	}
	return l, nil
}

// wholeNumber parses a whole number from minimum to MaxLimit.
func wholeNumber(field string, n json.Number, minimum int) (int, error) {
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v < int64(minimum) || v > MaxLimit {
		return 0, &FileError{Field: field, Problem: fmt.Sprintf("must be a whole number from %d to %d", minimum, MaxLimit)}
	}
	return int(v), nil
}
