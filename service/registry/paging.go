package registry

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Page asks for one page of a listing, newest first.
type Page struct {
	Size  int    // 1..500; 0 means 50, larger is clamped to 500
	Token string // "" for the first page
}

// KeyFilter narrows ListKeys. Empty fields match everything;
// Organisations, when non-nil, limits to those customer ids (authorization).
type KeyFilter struct {
	CustomerID     string
	UserIdentifier string
	Organisations  []string
}

// BackupFilter narrows ListBackups, as KeyFilter.
type BackupFilter struct {
	KeyID         string
	CustomerID    string
	Organisations []string
}

// Page sizes.
const (
	DefaultPageSize = 50
	MaxPageSize     = 500
)

// maxOrganisations bounds Organisations, which becomes one query parameter
// per entry.
const maxOrganisations = 1000

// Page token kinds, so that a token from one listing is refused by another.
const (
	keysCursor    = "k1"
	backupsCursor = "b1"
)

func pageSize(n int) int {
	switch {
	case n == 0:
		return DefaultPageSize
	case n < 1:
		return 1
	case n > MaxPageSize:
		return MaxPageSize
	default:
		return n
	}
}

// cursor is the sort key of the last row of a page: (time, id), both
// descending. The next page starts strictly after it, so rows inserted
// meanwhile never shift a page (keyset pagination).
type cursor struct {
	at time.Time
	id string
}

// encodeCursor makes the opaque page token: base64url of kind|time|id.
func encodeCursor(kind string, c cursor) string {
	raw := kind + "|" + c.at.UTC().Format(time.RFC3339Nano) + "|" + c.id
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(kind, token string) (cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return cursor{}, ErrInvalidPageToken
	}
	parts := strings.SplitN(string(raw), "|", 3)
	if len(parts) != 3 || parts[0] != kind || parts[2] == "" {
		return cursor{}, ErrInvalidPageToken
	}
	at, err := time.Parse(time.RFC3339Nano, parts[1])
	if err != nil {
		return cursor{}, ErrInvalidPageToken
	}
	return cursor{at: at.UTC(), id: parts[2]}, nil
}

// listQuery builds the WHERE clause shared by both listings.
type listQuery struct {
	args  argList
	where []string
}

func (q *listQuery) equal(column, v string) {
	if v != "" {
		q.where = append(q.where, column+" = "+q.args.add(v))
	}
}

// organisations limits to customer ids; it reports false when the
// (non-nil, empty) list admits nothing.
func (q *listQuery) organisations(ids []string) (bool, error) {
	if ids == nil {
		return true, nil
	}
	if len(ids) == 0 {
		return false, nil
	}
	if len(ids) > maxOrganisations {
		return false, fmt.Errorf("%w: more than %d organisations", ErrInvalidArgument, maxOrganisations)
	}
	marks := make([]string, len(ids))
	for i, id := range ids {
		marks[i] = q.args.add(id)
	}
	q.where = append(q.where, "customer_id IN ("+strings.Join(marks, ", ")+")")
	return true, nil
}

// sql returns the SELECT for columns of table, after cursor c (nil for the
// first page), ordered by (timeColumn, idColumn) descending, one row more
// than size so the caller knows whether another page follows.
func (q *listQuery) sql(s *Store, columns, table, timeColumn, idColumn string, c *cursor, size int) string {
	if c != nil {
		q.where = append(q.where, fmt.Sprintf("(%s, %s) < (%s, %s)",
			timeColumn, idColumn, q.args.add(s.dialect.timeArg(c.at)), q.args.add(c.id)))
	}
	return fmt.Sprintf("SELECT %s FROM %s WHERE %s ORDER BY %s DESC, %s DESC LIMIT %s",
		columns, table, strings.Join(q.where, " AND "), timeColumn, idColumn, q.args.add(size+1))
}

// ListKeys pages recorded keys, newest first; next is "" on the last page.
func (s *Store) ListKeys(ctx context.Context, f KeyFilter, p Page) (keys []Key, next string, err error) {
	ctx, end := s.tel.start(ctx, "ListKeys")
	defer func() { end(err, "") }()

	size := pageSize(p.Size)
	var c *cursor
	if p.Token != "" {
		cur, err := decodeCursor(keysCursor, p.Token)
		if err != nil {
			return nil, "", err
		}
		c = &cur
	}
	q := listQuery{where: []string{"state = 'assigned'"}}
	q.equal("customer_id", f.CustomerID)
	q.equal("user_identifier", f.UserIdentifier)
	if ok, err := q.organisations(f.Organisations); !ok {
		return nil, "", err
	}
	rows, err := s.read.QueryContext(ctx,
		q.sql(s, keyColumns, "keys", "assigned_at", "key_id", c, size), q.args...)
	if err != nil {
		return nil, "", fmt.Errorf("registry: list keys: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		row, err := scanKeyRow(rows)
		if err != nil {
			return nil, "", fmt.Errorf("registry: list keys: %w", err)
		}
		keys = append(keys, *row.key())
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("registry: list keys: %w", err)
	}
	if len(keys) > size {
		keys = keys[:size]
		last := keys[size-1]
		next = encodeCursor(keysCursor, cursor{at: last.AssignedAt, id: last.KeyID})
	}
	return keys, next, nil
}

// ListBackups pages recorded backups, newest first.
func (s *Store) ListBackups(ctx context.Context, f BackupFilter, p Page) (backups []Backup, next string, err error) {
	ctx, end := s.tel.start(ctx, "ListBackups")
	defer func() { end(err, "") }()

	size := pageSize(p.Size)
	var c *cursor
	if p.Token != "" {
		cur, err := decodeCursor(backupsCursor, p.Token)
		if err != nil {
			return nil, "", err
		}
		c = &cur
	}
	q := listQuery{where: []string{"state = 'stored'"}}
	q.equal("key_id", f.KeyID)
	q.equal("customer_id", f.CustomerID)
	if ok, err := q.organisations(f.Organisations); !ok {
		return nil, "", err
	}
	rows, err := s.read.QueryContext(ctx,
		q.sql(s, backupColumns, "backups", "stored_at", "backup_id", c, size), q.args...)
	if err != nil {
		return nil, "", fmt.Errorf("registry: list backups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b, err := scanBackup(rows)
		if err != nil {
			return nil, "", fmt.Errorf("registry: list backups: %w", err)
		}
		backups = append(backups, b)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("registry: list backups: %w", err)
	}
	if len(backups) > size {
		backups = backups[:size]
		last := backups[size-1]
		next = encodeCursor(backupsCursor, cursor{at: last.StoredAt, id: last.BackupID})
	}
	return backups, next, nil
}
