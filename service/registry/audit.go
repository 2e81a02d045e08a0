package registry

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Audit record kinds.
const (
	// AuditKindCall is one RPC, allowed or refused.
	AuditKindCall = "call"
	// AuditKindCheckpoint names the heads of the other writers' chains, so
	// that a record later deleted from any of them is missed by the verifier.
	AuditKindCheckpoint = "checkpoint"
	// AuditKindPrune names, after a retention prune, the last pruned record
	// of every pruned chain, so that what remains still verifies.
	AuditKindPrune = "prune"
)

// auditGenesisHash is the prev_hash of a chain's first record.
var auditGenesisHash = strings.Repeat("0", sha256.Size*2)

// auditHashDomain starts every record's hash input, so that an audit hash
// can never be mistaken for another SHA-256 of the same fields.
const auditHashDomain = "recoveryd-audit-v1"

// AuditEvent is one record of the audit trail. It never holds plaintext,
// ciphertext, checksums or tokens: only who called what, for which
// organisation, key and backup, and how it ended.
type AuditEvent struct {
	ID       int64 // the row's id (set when read)
	WriterID string
	Seq      int64
	Kind     string // AuditKindCall, AuditKindCheckpoint or AuditKindPrune
	At       time.Time
	// Caller is the authenticated caller's name; "" for a call refused
	// before its caller was known.
	Caller string
	// Method is the gRPC full method name.
	Method string
	// Organisations are the customer ids the call named or touched.
	Organisations []string
	KeyID         string
	BackupID      string
	PackageID     string
	// Code is the gRPC status code's name ("OK", "PERMISSION_DENIED" …),
	// Reason the ErrorInfo reason, if any.
	Code    string
	Reason  string
	TraceID string
	Peer    string
	// Anchors are a checkpoint's or prune's references to other records.
	Anchors  []AuditAnchor
	PrevHash string
	Hash     string
}

// AuditAnchor names one record by its chain, number and hash.
type AuditAnchor struct {
	WriterID string `json:"writer_id"`
	Seq      int64  `json:"seq"`
	Hash     string `json:"hash"`
}

// AuditChain is one writer's chain: its id and the number and hash of the
// last record it committed. One process appends to one chain, so replicas
// never wait on each other's rows; it is safe for concurrent use.
type AuditChain struct {
	mu       sync.Mutex
	writerID string
	seq      int64
	head     string
}

// maxAuditField bounds every text field of a record (a method name, a
// caller, a peer address); anything longer is cut, never refused: a call
// must not go unaudited for a long value.
const maxAuditField = 256

// NewAuditChain starts a new, empty chain for writerID, which must be
// unique to this process instance (a fresh random id per start).
func NewAuditChain(writerID string) (*AuditChain, error) {
	if writerID == "" || len(writerID) > maxAuditField {
		return nil, fmt.Errorf("%w: audit writer id must be 1..%d bytes", ErrInvalidArgument, maxAuditField)
	}
	return &AuditChain{writerID: writerID, head: auditGenesisHash}, nil
}

// WriterID is the chain's writer id.
func (c *AuditChain) WriterID() string { return c.writerID }

// Head is the number and hash of the chain's last committed record (0 and
// the genesis hash before the first).
func (c *AuditChain) Head() (int64, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seq, c.head
}

// auditRow is a record as stored: its hash covers exactly these texts.
type auditRow struct {
	id                                   int64
	writerID                             string
	seq                                  int64
	kind                                 string
	at                                   time.Time
	caller, method, organisations        string
	keyID, backupID, packageID           string
	code, reason, traceID, peer, anchors string
	prevHash, hash                       string
}

// cut bounds a field's length (on a UTF-8 boundary).
func cut(s string) string {
	if len(s) <= maxAuditField {
		return s
	}
	i := maxAuditField
	for i > 0 && s[i]&0xc0 == 0x80 {
		i--
	}
	return s[:i]
}

func rowFromEvent(e AuditEvent) (auditRow, error) {
	kind := e.Kind
	if kind == "" {
		kind = AuditKindCall
	}
	orgs := make([]string, 0, len(e.Organisations))
	for _, o := range e.Organisations {
		if o == "" {
			continue
		}
		// NOTE: a comma joins the list (customer ids never hold one: the
		// proto's pattern): refuse nothing, but keep the list parseable.
		orgs = append(orgs, strings.ReplaceAll(cut(o), ",", "_"))
	}
	sort.Strings(orgs)
	orgs = compactStrings(orgs)
	var anchors string
	if len(e.Anchors) > 0 {
		b, err := json.Marshal(e.Anchors)
		if err != nil {
			return auditRow{}, fmt.Errorf("registry: audit anchors: %w", err)
		}
		anchors = string(b)
	}
	return auditRow{
		kind: kind, at: e.At.UTC().Truncate(time.Microsecond),
		caller: cut(e.Caller), method: cut(e.Method), organisations: strings.Join(orgs, ","),
		keyID: cut(e.KeyID), backupID: cut(e.BackupID), packageID: cut(e.PackageID),
		code: cut(e.Code), reason: cut(e.Reason), traceID: cut(e.TraceID), peer: cut(e.Peer),
		anchors: anchors,
	}, nil
}

func compactStrings(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// digest is the record's SHA-256 over every stored field but its id and its
// own hash, each length-prefixed so no two records share an input.
func (r *auditRow) digest() string {
	fields := [...]string{
		r.writerID, strconv.FormatInt(r.seq, 10), r.kind, r.at.UTC().Format(sqliteTimeLayout),
		r.caller, r.method, r.organisations, r.keyID, r.backupID, r.packageID,
		r.code, r.reason, r.traceID, r.peer, r.anchors, r.prevHash,
	}
	h := sha256.New()
	buf := []byte(auditHashDomain)
	for _, f := range fields {
		buf = binary.AppendUvarint(buf, uint64(len(f)))
		buf = append(buf, f...)
	}
	_, _ = h.Write(buf)
	return hex.EncodeToString(h.Sum(nil))
}

func (r *auditRow) event() (AuditEvent, error) {
	e := AuditEvent{
		ID: r.id, WriterID: r.writerID, Seq: r.seq, Kind: r.kind, At: r.at,
		Caller: r.caller, Method: r.method, KeyID: r.keyID, BackupID: r.backupID, PackageID: r.packageID,
		Code: r.code, Reason: r.reason, TraceID: r.traceID, Peer: r.peer, PrevHash: r.prevHash, Hash: r.hash,
	}
	if r.organisations != "" {
		e.Organisations = strings.Split(r.organisations, ",")
	}
	if r.anchors != "" {
		if err := json.Unmarshal([]byte(r.anchors), &e.Anchors); err != nil {
			return e, fmt.Errorf("registry: audit record %s/%d: anchors: %w", r.writerID, r.seq, err)
		}
	}
	return e, nil
}

const auditColumns = `id, writer_id, seq, kind, at, caller, method, organisations, key_id, backup_id,
	package_id, code, reason, trace_id, peer, anchors, prev_hash, hash`

func scanAuditRow(rows interface{ Scan(...any) error }) (auditRow, error) {
	var (
		r  auditRow
		at dbTime
	)
	err := rows.Scan(&r.id, &r.writerID, &r.seq, &r.kind, &at, &r.caller, &r.method, &r.organisations,
		&r.keyID, &r.backupID, &r.packageID, &r.code, &r.reason, &r.traceID, &r.peer, &r.anchors,
		&r.prevHash, &r.hash)
	r.at = at.Time
	return r, err
}

// appendAuditSQL inserts one audit record (insertAuditRows).
const appendAuditSQL = `INSERT INTO audit_events (writer_id, seq, kind, at, caller, method,
	organisations, key_id, backup_id, package_id, code, reason, trace_id, peer, anchors, prev_hash, hash)
	VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`

// insertAuditRows chains rows onto (seq, prev) and inserts them in tx; it
// returns the new head.
func (s *Store) insertAuditRows(ctx context.Context, tx *sql.Tx, writerID string, seq int64, prev string, rows []auditRow) (int64, string, error) {
	for i := range rows {
		r := &rows[i]
		seq++
		r.writerID, r.seq, r.prevHash = writerID, seq, prev
		r.hash = r.digest()
		prev = r.hash
		if _, err := s.stmts.appendAudit.execTx(ctx, tx,
			r.writerID, r.seq, r.kind, s.dialect.timeArg(r.at), r.caller, r.method, r.organisations,
			r.keyID, r.backupID, r.packageID, r.code, r.reason, r.traceID, r.peer, r.anchors,
			r.prevHash, r.hash); err != nil {
			return 0, "", fmt.Errorf("registry: append audit record: %w", err)
		}
	}
	return seq, prev, nil
}

// AppendAudit appends events to chain c in one transaction: all of them or,
// on error, none (the chain's head is then unchanged, so the caller may
// retry the same events). The events' WriterID, Seq and hashes are set here.
//
// durable false commits without waiting for the disk (SQLite's
// synchronous NORMAL for this transaction, PostgreSQL's synchronous_commit
// off): a crash of the process loses nothing committed, a power loss may
// lose the last such commits, and the next durable commit of the database
// (any registry write) makes them durable too. It is for records nobody
// waits on; a write's record is appended durable.
func (s *Store) AppendAudit(ctx context.Context, c *AuditChain, events []AuditEvent, durable bool) error {
	entries := make([]AuditEntry, len(events))
	for i, e := range events {
		entries[i].Event = e
	}
	_, err := s.AppendAuditWrites(ctx, c, entries, durable)
	return err
}

// AuditEntry is one record to append and, when Write is set, the registry
// write it records: the two commit together or not at all.
type AuditEntry struct {
	Event AuditEvent
	Write *TxWrite
}

// ErrAuditAppend wraps the failure to insert an entry's record: its write,
// if any, was undone with it.
var ErrAuditAppend = errors.New("registry: audit record not appended")

// AppendAuditWrites is AppendAudit for entries, some of which carry the
// write they record. Each such entry runs its write and then inserts its
// record inside a savepoint of its own, so that a write that fails (a
// reservation lost, a duplicate) is undone with its record, reported in
// errs at its index, and leaves the other entries to commit. err is the
// failure of the transaction itself: then nothing committed, every write
// included. A transaction carrying a write is always durable.
func (s *Store) AppendAuditWrites(ctx context.Context, c *AuditChain, entries []AuditEntry, durable bool) (errs []error, err error) {
	if len(entries) == 0 {
		return nil, nil
	}
	ctx, end := s.tel.start(ctx, "AppendAudit")
	defer func() { end(err, "") }()
	rows := make([]auditRow, len(entries))
	for i := range entries {
		if rows[i], err = rowFromEvent(entries[i].Event); err != nil {
			return nil, err
		}
		if rows[i].kind != AuditKindCall {
			return nil, fmt.Errorf("%w: audit kind %q is written by Checkpoint and PruneAudit only", ErrInvalidArgument, rows[i].kind)
		}
		durable = durable || entries[i].Write != nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var seq int64
	var head string
	err = s.auditTx(ctx, durable, func(tx *sql.Tx) error {
		seq, head = c.seq, c.head // the committed head; c.mu is held
		// appendRow chains entry i's record onto (seq, head) and moves the
		// head only once its insert succeeded.
		appendRow := func(tx *sql.Tx, i int) error {
			n, h, err := s.insertAuditRows(ctx, tx, c.writerID, seq, head, rows[i:i+1])
			if err != nil {
				return fmt.Errorf("%w: %w", ErrAuditAppend, err)
			}
			seq, head = n, h
			return nil
		}
		errs = make([]error, len(entries))
		for i := range entries {
			w := entries[i].Write
			if w == nil {
				if err := appendRow(tx, i); err != nil {
					return err
				}
				continue
			}
			var fatal error
			errs[i], fatal = inSavepoint(ctx, tx, func(tx *sql.Tx) error {
				if err := w.fn(tx); err != nil {
					return err
				}
				return appendRow(tx, i)
			})
			if fatal != nil {
				return fatal
			}
			// NOTE: an entry undone by its savepoint took no number: its
			// insert is the last statement inside the savepoint.
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	c.seq, c.head = seq, head
	return errs, nil
}

// auditTx runs fn in a write transaction, durable or not (AppendAudit).
func (s *Store) auditTx(ctx context.Context, durable bool, fn func(tx *sql.Tx) error) error {
	if durable {
		return s.commit(ctx, fn)
	}
	if _, ok := s.dialect.(postgresDialect); ok {
		return s.commit(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `SET LOCAL synchronous_commit TO OFF`); err != nil {
				return fmt.Errorf("registry: audit commit mode: %w", err)
			}
			return fn(tx)
		})
	}
	// SQLite: the pragma is the connection's, so it is set on the single
	// writer connection for this transaction and set back after it; a
	// connection that cannot be set back is dropped, never reused with
	// the registry's own writes made less durable.
	conn, err := s.write.Conn(ctx)
	if err != nil {
		return fmt.Errorf("registry: begin: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous = NORMAL`); err != nil {
		return fmt.Errorf("registry: audit commit mode: %w", err)
	}
	defer func() {
		if _, err := conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous = FULL`); err != nil {
			_ = conn.Raw(func(any) error { return driver.ErrBadConn })
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("registry: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("registry: commit: %w", err)
	}
	return nil
}

// CheckpointAudit appends to c a checkpoint record naming the head of every
// other chain that has a record since since (older chains were named by
// earlier checkpoints), and returns it. Deleting any record a checkpoint
// names, or any before it in its chain, breaks verification.
func (s *Store) CheckpointAudit(ctx context.Context, c *AuditChain, since time.Time) (_ AuditEvent, err error) {
	ctx, end := s.tel.start(ctx, "CheckpointAudit")
	defer func() { end(err, "") }()
	c.mu.Lock()
	defer c.mu.Unlock()
	var row auditRow
	var seq int64
	var head string
	err = s.commit(ctx, func(tx *sql.Tx) error {
		var anchors []AuditAnchor
		err := queryEachOn(ctx, tx, `SELECT a.writer_id, a.seq, a.hash FROM audit_events a
			JOIN (SELECT writer_id, MAX(seq) AS seq FROM audit_events
			      WHERE writer_id <> $1 AND at >= $2 GROUP BY writer_id) h
			  ON a.writer_id = h.writer_id AND a.seq = h.seq
			ORDER BY a.writer_id`, []any{c.writerID, s.dialect.timeArg(since.UTC().Truncate(time.Microsecond))},
			func(rows *sql.Rows) error {
				var a AuditAnchor
				if err := rows.Scan(&a.WriterID, &a.Seq, &a.Hash); err != nil {
					return err
				}
				anchors = append(anchors, a)
				return nil
			})
		if err != nil {
			return fmt.Errorf("registry: audit checkpoint: %w", err)
		}
		if row, err = rowFromEvent(AuditEvent{Kind: AuditKindCheckpoint, At: s.now(), Anchors: anchors}); err != nil {
			return err
		}
		rs := []auditRow{row}
		seq, head, err = s.insertAuditRows(ctx, tx, c.writerID, c.seq, c.head, rs)
		row = rs[0]
		return err
	})
	if err != nil {
		return AuditEvent{}, err
	}
	c.seq, c.head = seq, head
	return row.event()
}

// AuditPruned says what PruneAudit removed.
type AuditPruned struct {
	Records int64 // records exported and deleted
	Chains  int   // chains they came from
}

// auditExportLine is one exported record: every stored field, the chain
// hashes included, so an export verifies on its own.
type auditExportLine struct {
	ID            int64  `json:"id"`
	WriterID      string `json:"writer_id"`
	Seq           int64  `json:"seq"`
	Kind          string `json:"kind"`
	At            string `json:"at"`
	Caller        string `json:"caller,omitempty"`
	Method        string `json:"method,omitempty"`
	Organisations string `json:"organisations,omitempty"`
	KeyID         string `json:"key_id,omitempty"`
	BackupID      string `json:"backup_id,omitempty"`
	PackageID     string `json:"package_id,omitempty"`
	Code          string `json:"code,omitempty"`
	Reason        string `json:"reason,omitempty"`
	TraceID       string `json:"trace_id,omitempty"`
	Peer          string `json:"peer,omitempty"`
	Anchors       string `json:"anchors,omitempty"`
	PrevHash      string `json:"prev_hash"`
	Hash          string `json:"hash"`
}

// PruneAudit removes the records older than before, after exporting them.
// For each chain it takes the prefix up to its newest record older than
// before (so a chain keeps no gap), writes those records to export as JSON
// lines, calls sync (which must make the export durable; an error leaves
// everything in place), and only then deletes them in one transaction
// that also appends to c a prune record: the last pruned record of every
// chain ever pruned, so the remaining chains still verify.
func (s *Store) PruneAudit(ctx context.Context, c *AuditChain, before time.Time, export io.Writer, sync func() error) (_ AuditPruned, err error) {
	ctx, end := s.tel.start(ctx, "PruneAudit")
	defer func() { end(err, "") }()
	var out AuditPruned

	type prefix struct {
		writerID string
		upTo     int64
	}
	var prefixes []prefix
	err = s.queryEach(ctx, `SELECT writer_id, MAX(seq) FROM audit_events WHERE at < $1 GROUP BY writer_id ORDER BY writer_id`,
		[]any{s.dialect.timeArg(before.UTC())}, func(rows *sql.Rows) error {
			var p prefix
			if err := rows.Scan(&p.writerID, &p.upTo); err != nil {
				return err
			}
			prefixes = append(prefixes, p)
			return nil
		})
	if err != nil || len(prefixes) == 0 {
		return out, err
	}
	bases, err := s.auditPruneBases(ctx, s.read)
	if err != nil {
		return out, err
	}
	enc := json.NewEncoder(export)
	for _, p := range prefixes {
		var last *auditRow
		err := s.queryEach(ctx, `SELECT `+auditColumns+` FROM audit_events WHERE writer_id = $1 AND seq <= $2 ORDER BY seq`,
			[]any{p.writerID, p.upTo}, func(rows *sql.Rows) error {
				r, err := scanAuditRow(rows)
				if err != nil {
					return err
				}
				last = &r
				out.Records++
				return enc.Encode(auditExportLine{
					ID: r.id, WriterID: r.writerID, Seq: r.seq, Kind: r.kind, At: r.at.Format(sqliteTimeLayout),
					Caller: r.caller, Method: r.method, Organisations: r.organisations, KeyID: r.keyID,
					BackupID: r.backupID, PackageID: r.packageID, Code: r.code, Reason: r.reason,
					TraceID: r.traceID, Peer: r.peer, Anchors: r.anchors, PrevHash: r.prevHash, Hash: r.hash,
				})
			})
		if err != nil {
			return AuditPruned{}, fmt.Errorf("registry: export audit records: %w", err)
		}
		if last != nil {
			bases[p.writerID] = AuditAnchor{WriterID: p.writerID, Seq: last.seq, Hash: last.hash}
		}
		out.Chains++
	}
	if err := sync(); err != nil {
		return AuditPruned{}, fmt.Errorf("registry: export audit records: %w", err)
	}

	anchors := make([]AuditAnchor, 0, len(bases))
	for _, b := range bases {
		anchors = append(anchors, b)
	}
	sort.Slice(anchors, func(i, j int) bool { return anchors[i].WriterID < anchors[j].WriterID })
	c.mu.Lock()
	defer c.mu.Unlock()
	var seq int64
	var head string
	err = s.commit(ctx, func(tx *sql.Tx) error {
		for _, p := range prefixes {
			if _, err := tx.ExecContext(ctx, `DELETE FROM audit_events WHERE writer_id = $1 AND seq <= $2`, p.writerID, p.upTo); err != nil {
				return fmt.Errorf("registry: prune audit records: %w", err)
			}
		}
		row, err := rowFromEvent(AuditEvent{Kind: AuditKindPrune, At: s.now(), Anchors: anchors})
		if err != nil {
			return err
		}
		seq, head, err = s.insertAuditRows(ctx, tx, c.writerID, c.seq, c.head, []auditRow{row})
		return err
	})
	if err != nil {
		return AuditPruned{}, err
	}
	c.seq, c.head = seq, head
	return out, nil
}

// auditPruneBases reads, from the prune records, the last pruned record of
// every chain ever pruned (the newest per chain).
func (s *Store) auditPruneBases(ctx context.Context, q queryer) (map[string]AuditAnchor, error) {
	bases := map[string]AuditAnchor{}
	err := queryEachOn(ctx, q, `SELECT writer_id, seq, anchors FROM audit_events WHERE kind = $1`,
		[]any{AuditKindPrune}, func(rows *sql.Rows) error {
			var (
				w       string
				seq     int64
				anchors string
			)
			if err := rows.Scan(&w, &seq, &anchors); err != nil {
				return err
			}
			var as []AuditAnchor
			if err := json.Unmarshal([]byte(anchors), &as); err != nil {
				// A prune record whose anchors do not parse was edited: the
				// verifier reports it by its hash; it names no base here.
				return nil //nolint:nilerr // reported by VerifyAudit
			}
			for _, a := range as {
				if b, ok := bases[a.WriterID]; !ok || a.Seq > b.Seq {
					bases[a.WriterID] = a
				}
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("registry: read audit prune records: %w", err)
	}
	return bases, nil
}

// queryer is a pool or a transaction.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// queryEach runs query on the read pool and calls fn for each row.
func (s *Store) queryEach(ctx context.Context, query string, args []any, fn func(*sql.Rows) error) error {
	return queryEachOn(ctx, s.read, query, args, fn)
}

// queryEachOn is queryEach on q.
func queryEachOn(ctx context.Context, q queryer, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// AuditReport is what VerifyAudit found.
type AuditReport struct {
	Records     int64 // records checked
	Chains      int   // chains (writers) seen
	Checkpoints int64 // checkpoint and prune records among them
	// Broken is the first broken link, nil when every chain verifies.
	Broken *AuditBreak
}

// AuditBreak is a broken link: the record (writer, seq) where verification
// failed, and what is wrong there.
type AuditBreak struct {
	WriterID string
	Seq      int64
	Problem  string
}

func (b *AuditBreak) String() string {
	return fmt.Sprintf("chain %s, record %d: %s", b.WriterID, b.Seq, b.Problem)
}

// VerifyAudit checks every chain: each record's hash against its content,
// each link to the record before it, each chain's start (record 1, or the
// record after the last pruned one a prune record names), and every record
// a checkpoint names. It reports the first broken link found.
func (s *Store) VerifyAudit(ctx context.Context) (rep AuditReport, err error) {
	ctx, end := s.tel.start(ctx, "VerifyAudit")
	defer func() { end(err, "") }()

	// NOTE: one read transaction, so that records appended or pruned
	// meanwhile are all seen or none (a snapshot: WAL on SQLite, REPEATABLE
	// READ on PostgreSQL).
	txOpts := &sql.TxOptions{ReadOnly: true}
	if s.dialect.name() == (postgresDialect{}).name() {
		txOpts.Isolation = sql.LevelRepeatableRead
	}
	tx, err := s.read.BeginTx(ctx, txOpts)
	if err != nil {
		return rep, fmt.Errorf("registry: verify audit: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	bases, err := s.auditPruneBases(ctx, tx)
	if err != nil {
		return rep, err
	}
	type ref struct {
		writerID string
		seq      int64
	}
	wanted := map[ref]AuditAnchor{} // checkpoint anchors, until met
	err = queryEachOn(ctx, tx, `SELECT anchors FROM audit_events WHERE kind = $1`, []any{AuditKindCheckpoint}, func(rows *sql.Rows) error {
		var anchors string
		if err := rows.Scan(&anchors); err != nil {
			return err
		}
		var as []AuditAnchor
		if json.Unmarshal([]byte(anchors), &as) == nil {
			for _, a := range as {
				wanted[ref{a.WriterID, a.Seq}] = a
			}
		}
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("registry: verify audit: %w", err)
	}

	var prev *auditRow
	brk := func(r *auditRow, format string, args ...any) {
		if rep.Broken == nil {
			rep.Broken = &AuditBreak{WriterID: r.writerID, Seq: r.seq, Problem: fmt.Sprintf(format, args...)}
		}
	}
	err = queryEachOn(ctx, tx, `SELECT `+auditColumns+` FROM audit_events ORDER BY writer_id, seq`, nil, func(rows *sql.Rows) error {
		r, err := scanAuditRow(rows)
		if err != nil {
			return err
		}
		rep.Records++
		if r.kind != AuditKindCall {
			rep.Checkpoints++
		}
		if got := r.digest(); got != r.hash {
			brk(&r, "the record's content does not match its hash (edited)")
		}
		if prev == nil || prev.writerID != r.writerID {
			rep.Chains++
			base, pruned := bases[r.writerID]
			switch {
			case pruned && r.seq != base.Seq+1:
				brk(&r, "records %d..%d are missing (the last pruned record is %d)", base.Seq+1, r.seq-1, base.Seq)
			case pruned && r.prevHash != base.Hash:
				brk(&r, "the link to the last pruned record %d does not match", base.Seq)
			case !pruned && r.seq != 1:
				brk(&r, "records 1..%d are missing and no prune record accounts for them", r.seq-1)
			case !pruned && r.prevHash != auditGenesisHash:
				brk(&r, "the chain's first record does not start from the genesis hash")
			}
		} else {
			switch {
			case r.seq != prev.seq+1:
				brk(&r, "records %d..%d are missing (deleted)", prev.seq+1, r.seq-1)
			case r.prevHash != prev.hash:
				brk(&r, "the link to record %d does not match its hash (edited or replaced)", prev.seq)
			}
		}
		if a, ok := wanted[ref{r.writerID, r.seq}]; ok {
			if a.Hash != r.hash {
				brk(&r, "a checkpoint names this record with another hash (replaced)")
			}
			delete(wanted, ref{r.writerID, r.seq})
		}
		prev = &r
		return nil
	})
	if err != nil {
		return rep, fmt.Errorf("registry: verify audit: %w", err)
	}
	// Checkpointed records never met: deleted, unless a prune removed them.
	missing := make([]AuditAnchor, 0, len(wanted))
	for _, a := range wanted {
		if base, ok := bases[a.WriterID]; ok && a.Seq <= base.Seq {
			continue
		}
		missing = append(missing, a)
	}
	sort.Slice(missing, func(i, j int) bool {
		if missing[i].WriterID != missing[j].WriterID {
			return missing[i].WriterID < missing[j].WriterID
		}
		return missing[i].Seq < missing[j].Seq
	})
	if len(missing) > 0 && rep.Broken == nil {
		a := missing[0]
		rep.Broken = &AuditBreak{WriterID: a.WriterID, Seq: a.Seq,
			Problem: "a checkpoint names this record but it is missing (deleted, or its chain truncated)"}
	}
	return rep, nil
}

// AuditFilter narrows ListAuditEvents; empty fields match everything.
type AuditFilter struct {
	Organisation string
	Caller       string
	From, To     time.Time // From inclusive, To exclusive
}

// auditCursor is the page token kind of ListAuditEvents.
const auditCursor = "a1"

// ListAuditEvents pages the call records, newest first; next is "" on the
// last page.
func (s *Store) ListAuditEvents(ctx context.Context, f AuditFilter, p Page) (events []AuditEvent, next string, err error) {
	ctx, end := s.tel.start(ctx, "ListAuditEvents")
	defer func() { end(err, "") }()
	size := pageSize(p.Size)
	var args argList
	where := []string{"kind = " + args.add(AuditKindCall)}
	if f.Organisation != "" {
		where = append(where, s.dialect.contains("',' || organisations || ','", args.add(","+f.Organisation+",")))
	}
	if f.Caller != "" {
		where = append(where, "caller = "+args.add(f.Caller))
	}
	if !f.From.IsZero() {
		where = append(where, "at >= "+args.add(s.dialect.timeArg(f.From.UTC().Truncate(time.Microsecond))))
	}
	if !f.To.IsZero() {
		where = append(where, "at < "+args.add(s.dialect.timeArg(f.To.UTC().Truncate(time.Microsecond))))
	}
	if p.Token != "" {
		c, err := decodeCursor(auditCursor, p.Token)
		if err != nil {
			return nil, "", err
		}
		id, err := strconv.ParseInt(c.id, 10, 64)
		if err != nil {
			return nil, "", ErrInvalidPageToken
		}
		where = append(where, fmt.Sprintf("(at, id) < (%s, %s)", args.add(s.dialect.timeArg(c.at)), args.add(id)))
	}
	query := `SELECT ` + auditColumns + ` FROM audit_events WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY at DESC, id DESC LIMIT ` + args.add(size+1)
	err = s.queryEach(ctx, query, args, func(rows *sql.Rows) error {
		r, err := scanAuditRow(rows)
		if err != nil {
			return err
		}
		e, err := r.event()
		if err != nil {
			return err
		}
		events = append(events, e)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("registry: list audit events: %w", err)
	}
	if len(events) > size {
		events = events[:size]
		last := events[size-1]
		next = encodeCursor(auditCursor, cursor{at: last.At, id: strconv.FormatInt(last.ID, 10)})
	}
	return events, next, nil
}
