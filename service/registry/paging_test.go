package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"sort"
	"testing"
	"time"
)

func TestPageSize(t *testing.T) {
	tests := []struct{ in, want int }{
		{0, DefaultPageSize}, {-1, 1}, {-1000, 1}, {1, 1}, {7, 7}, {MaxPageSize, MaxPageSize}, {MaxPageSize + 1, MaxPageSize}, {1 << 30, MaxPageSize},
	}
	for _, tt := range tests {
		if got := pageSize(tt.in); got != tt.want {
			t.Errorf("pageSize(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestPageTokens(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	c := cursor{at: at, id: "key|with|bars"}
	got, err := decodeCursor(keysCursor, encodeCursor(keysCursor, c))
	if err != nil || !got.at.Equal(at) || got.id != c.id {
		t.Fatalf("round trip = %+v, %v; want %+v", got, err, c)
	}
	enc := base64.RawURLEncoding.EncodeToString
	bad := map[string]string{
		"not base64":              "!!!",
		"padded base64":           base64.URLEncoding.EncodeToString([]byte("k1|2026-01-02T03:04:05Z|k")),
		"other listing's token":   encodeCursor(backupsCursor, c),
		"no id":                   enc([]byte("k1|2026-01-02T03:04:05Z|")),
		"two parts":               enc([]byte("k1|2026-01-02T03:04:05Z")),
		"bad time":                enc([]byte("k1|yesterday|key-1")),
		"unknown version":         enc([]byte("k9|2026-01-02T03:04:05Z|key-1")),
		"plain text":              "key-0001",
		"base64 of random binary": enc([]byte{0xff, 0x00, 0x7c}),
	}
	for name, token := range bad {
		if _, err := decodeCursor(keysCursor, token); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("%s: %v, want ErrInvalidPageToken", name, err)
		}
	}
}

// collectKeys follows next tokens to the end, checking every page's size.
func collectKeys(t *testing.T, s *Store, f KeyFilter, size int) []string {
	t.Helper()
	var ids []string
	token := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("ListKeys never returned an empty next token")
		}
		keys, next, err := s.ListKeys(context.Background(), f, Page{Size: size, Token: token})
		if err != nil {
			t.Fatalf("ListKeys(%+v, page %d): %v", f, pages, err)
		}
		if len(keys) > size || (next != "" && len(keys) != size) {
			t.Fatalf("page %d has %d keys (size %d, next %q)", pages, len(keys), size, next)
		}
		for _, k := range keys {
			ids = append(ids, k.KeyID)
		}
		if next == "" {
			return ids
		}
		token = next
	}
}

func TestListKeys(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()

		// 23 keys over three customers. Every third key shares its
		// predecessor's assigned_at, so ties are broken by key id.
		type rec struct {
			id, customer, user string
			at                 time.Time
		}
		var all []rec
		for i := range 23 {
			if i%3 != 2 {
				clock.Advance(time.Second + time.Microsecond)
			}
			tm := terms(i%3, i)
			k := assignKey(t, s, tm, testKey(i))
			all = append(all, rec{k.KeyID, tm.CustomerID, tm.UserIdentifier, k.AssignedAt})
		}
		// Rows that are not recorded keys are never listed.
		if _, err := s.ReserveAssignment(ctx, terms(0, 900), time.Minute); err != nil {
			t.Fatal(err)
		}
		failed, err := s.ReserveAssignment(ctx, terms(1, 901), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.FailAssignment(ctx, failed.Token, AssignmentUntrusted, "bad signature"); err != nil {
			t.Fatal(err)
		}

		sort.Slice(all, func(i, j int) bool {
			if !all[i].at.Equal(all[j].at) {
				return all[i].at.After(all[j].at)
			}
			return all[i].id > all[j].id
		})
		want := func(keep func(rec) bool) []string {
			var ids []string
			for _, r := range all {
				if keep(r) {
					ids = append(ids, r.id)
				}
			}
			return ids
		}
		everything := func(rec) bool { return true }

		tests := []struct {
			name   string
			filter KeyFilter
			keep   func(rec) bool
		}{
			{"no filter", KeyFilter{}, everything},
			{"customer", KeyFilter{CustomerID: "customer-1"}, func(r rec) bool { return r.customer == "customer-1" }},
			{"user", KeyFilter{UserIdentifier: "user-004"}, func(r rec) bool { return r.user == "user-004" }},
			{"customer and user", KeyFilter{CustomerID: "customer-1", UserIdentifier: "user-004"}, func(r rec) bool {
				return r.customer == "customer-1" && r.user == "user-004"
			}},
			{"customer and another's user", KeyFilter{CustomerID: "customer-2", UserIdentifier: "user-004"}, func(rec) bool { return false }},
			{"organisations", KeyFilter{Organisations: []string{"customer-0", "customer-2"}}, func(r rec) bool { return r.customer != "customer-1" }},
			{"organisations and customer outside them", KeyFilter{CustomerID: "customer-1", Organisations: []string{"customer-0"}}, func(rec) bool { return false }},
			{"empty organisations", KeyFilter{Organisations: []string{}}, func(rec) bool { return false }},
			{"unknown organisation", KeyFilter{Organisations: []string{"customer-9"}}, func(rec) bool { return false }},
		}
		for _, tt := range tests {
			wantIDs := want(tt.keep)
			for _, size := range []int{1, 4, 5, 23, 500} {
				if got := collectKeys(t, s, tt.filter, size); !slices.Equal(got, wantIDs) {
					t.Errorf("%s, pages of %d:\n got %v\nwant %v", tt.name, size, got, wantIDs)
				}
			}
		}

		// Size 0 means the default, which holds all 23 on one page.
		keys, next, err := s.ListKeys(ctx, KeyFilter{}, Page{})
		if err != nil || next != "" || len(keys) != 23 {
			t.Errorf("default page: %d keys, next %q, %v; want 23 and no next", len(keys), next, err)
		}
		// A key recorded after the first page was read does not shift the
		// next one: it is newer than the cursor.
		first, next, err := s.ListKeys(ctx, KeyFilter{}, Page{Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Second)
		assignKey(t, s, terms(0, 500), testKey(500))
		rest := collectKeysFrom(t, s, next, 10)
		var got []string
		for _, k := range first {
			got = append(got, k.KeyID)
		}
		if got = append(got, rest...); !slices.Equal(got, want(everything)) {
			t.Errorf("pages around an insert:\n got %v\nwant %v", got, want(everything))
		}

		for name, token := range map[string]string{
			"garbage":              "not-a-token",
			"backup listing token": encodeCursor(backupsCursor, cursor{at: clock.Now(), id: "x"}),
		} {
			if _, _, err := s.ListKeys(ctx, KeyFilter{}, Page{Token: token}); !errors.Is(err, ErrInvalidPageToken) {
				t.Errorf("ListKeys with %s: %v, want ErrInvalidPageToken", name, err)
			}
		}
		many := make([]string, maxOrganisations+1)
		for i := range many {
			many[i] = fmt.Sprintf("customer-%d", i)
		}
		if _, _, err := s.ListKeys(ctx, KeyFilter{Organisations: many}, Page{}); !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ListKeys with %d organisations: %v, want ErrInvalidArgument", len(many), err)
		}
	})
}

func collectKeysFrom(t *testing.T, s *Store, token string, size int) []string {
	t.Helper()
	var ids []string
	for token != "" {
		keys, next, err := s.ListKeys(context.Background(), KeyFilter{}, Page{Size: size, Token: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			ids = append(ids, k.KeyID)
		}
		token = next
	}
	return ids
}

func TestListBackups(t *testing.T) {
	forEachBackend(t, func(t *testing.T, db testDB) {
		clock := newTestClock()
		s := db.mustOpen(t, WithClock(clock.Now))
		ctx := context.Background()

		keys := []Key{
			assignKey(t, s, terms(0, 0), testKey(0)),
			assignKey(t, s, terms(1, 1), testKey(1)),
			assignKey(t, s, terms(2, 2), testKey(2)),
		}
		var all []Backup
		for i := range 17 {
			if i%4 != 3 {
				clock.Advance(time.Millisecond)
			}
			b := testBackup(i, keys[i%3].KeyID)
			if i%2 == 0 {
				if err := s.RecordBackup(ctx, b); err != nil {
					t.Fatal(err)
				}
			} else {
				res, err := s.ReserveBackup(ctx, "wallet-api", fmt.Sprintf("idem-%d", i), "hash", time.Minute)
				if err != nil {
					t.Fatal(err)
				}
				if err := s.CompleteBackup(ctx, res.Token, b); err != nil {
					t.Fatal(err)
				}
			}
			list, _, err := s.ListBackups(ctx, BackupFilter{KeyID: b.KeyID}, Page{Size: 1})
			if err != nil || len(list) != 1 {
				t.Fatalf("ListBackups after recording %s: %v, %v", b.BackupID, list, err)
			}
			all = append(all, list[0])
		}
		if _, err := s.ReserveBackup(ctx, "wallet-api", "idem-pending", "hash", time.Minute); err != nil {
			t.Fatal(err)
		}
		sort.Slice(all, func(i, j int) bool {
			if !all[i].StoredAt.Equal(all[j].StoredAt) {
				return all[i].StoredAt.After(all[j].StoredAt)
			}
			return all[i].BackupID > all[j].BackupID
		})
		want := func(keep func(Backup) bool) []Backup {
			var out []Backup
			for _, b := range all {
				if keep(b) {
					out = append(out, b)
				}
			}
			return out
		}
		tests := []struct {
			name   string
			filter BackupFilter
			keep   func(Backup) bool
		}{
			{"no filter", BackupFilter{}, func(Backup) bool { return true }},
			{"key", BackupFilter{KeyID: keys[1].KeyID}, func(b Backup) bool { return b.KeyID == keys[1].KeyID }},
			{"customer", BackupFilter{CustomerID: "customer-2"}, func(b Backup) bool { return b.CustomerID == "customer-2" }},
			{"organisations", BackupFilter{Organisations: []string{"customer-0", "customer-1"}}, func(b Backup) bool { return b.CustomerID != "customer-2" }},
			{"key outside organisations", BackupFilter{KeyID: keys[2].KeyID, Organisations: []string{"customer-0"}}, func(Backup) bool { return false }},
			{"empty organisations", BackupFilter{Organisations: []string{}}, func(Backup) bool { return false }},
		}
		for _, tt := range tests {
			wantBackups := want(tt.keep)
			for _, size := range []int{1, 3, 17, 0} {
				var got []Backup
				token := ""
				for pages := 0; ; pages++ {
					page, next, err := s.ListBackups(ctx, tt.filter, Page{Size: size, Token: token})
					if err != nil || pages > 50 {
						t.Fatalf("%s: ListBackups page %d: %v", tt.name, pages, err)
					}
					got = append(got, page...)
					if next == "" {
						break
					}
					token = next
				}
				if !slices.Equal(got, wantBackups) {
					t.Errorf("%s, pages of %d:\n got %v\nwant %v", tt.name, size, got, wantBackups)
				}
			}
		}
		keyToken := encodeCursor(keysCursor, cursor{at: clock.Now(), id: "x"})
		if _, _, err := s.ListBackups(ctx, BackupFilter{}, Page{Token: keyToken}); !errors.Is(err, ErrInvalidPageToken) {
			t.Errorf("ListBackups with a key listing token: %v, want ErrInvalidPageToken", err)
		}
	})
}

// FuzzDecodeCursor feeds page tokens, which callers hand back unchecked, to
// the decoder: it must never panic, and what it accepts must re-encode to a
// token that decodes to the same cursor.
func FuzzDecodeCursor(f *testing.F) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 678901000, time.UTC)
	f.Add(encodeCursor(keysCursor, cursor{at: at, id: "key-0001"}))
	f.Add(encodeCursor(backupsCursor, cursor{at: at, id: "backup|with|bars"}))
	f.Add("")
	f.Add("!!!")
	f.Add(base64.RawURLEncoding.EncodeToString([]byte("k1||")))
	f.Fuzz(func(t *testing.T, token string) {
		c, err := decodeCursor(keysCursor, token)
		if err != nil {
			if !errors.Is(err, ErrInvalidPageToken) {
				t.Fatalf("error %v is not ErrInvalidPageToken", err)
			}
			return
		}
		again, err := decodeCursor(keysCursor, encodeCursor(keysCursor, c))
		if err != nil || !again.at.Equal(c.at) || again.id != c.id {
			t.Fatalf("re-encoded %+v decodes to %+v, %v", c, again, err)
		}
	})
}
