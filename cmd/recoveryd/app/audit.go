package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/service"
	"github.com/walletprovider/recoveryservice/service/audit"
	"github.com/walletprovider/recoveryservice/service/registry"
)

// auditExportDirName is the directory under --data-dir that receives the
// audit records a retention prune exports.
const auditExportDirName = "audit-export"

const (
	// auditCommitWait bounds how long a completed write waits for its audit
	// record's commit before it is answered.
	auditCommitWait = 5 * time.Second
	// auditRetryAfter is the RetryInfo of AUDIT_UNAVAILABLE.
	auditRetryAfter = time.Second
	// auditWarnEvery spaces development's warnings about unwritten records.
	auditWarnEvery = 10 * time.Second
	// maxAuditOrganisations bounds the organisations a listing's record
	// names (a page holds up to 500 rows).
	maxAuditOrganisations = 64
)

// auditor is the chain's audit position: one record per call, allowed or
// refused. enforce (production) fails a call whose record cannot be
// written; otherwise it is only logged.
type auditor struct {
	w *audit.Writer
	// writes commits a write alone, when development goes on without its
	// record.
	writes   writeCommitter
	enforce  bool
	log      *slog.Logger
	lastWarn atomic.Int64 // unix nanoseconds of the last development warning
}

// writeCommitter commits a registry write on its own; a *registry.Store is
// one.
type writeCommitter interface {
	CommitWrite(ctx context.Context, w registry.TxWrite) error
}

// newAuditor returns nil for a nil writer: its positions then pass calls
// through.
func newAuditor(w *audit.Writer, writes writeCommitter, enforce bool, log *slog.Logger) *auditor {
	if w == nil {
		return nil
	}
	return &auditor{w: w, writes: writes, enforce: enforce, log: log}
}

// auditExempt reports whether fullMethod leaves no record: health probes,
// which answer the orchestrator every few seconds and touch no data.
func auditExempt(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/"+healthpb.Health_ServiceDesc.ServiceName+"/")
}

// auditWrites are the methods that change the registry: their record is
// committed before the caller is answered, in the write's own transaction
// (callRecord) when the call made one.
var auditWrites = map[string]bool{
	recoveryv1.RecoveryService_AssignKey_FullMethodName:  true,
	recoveryv1.RecoveryService_SecureData_FullMethodName: true,
	recoveryv1.RecoveryService_SecureFile_FullMethodName: true,
}

// unavailable is the refusal of a call whose record cannot be written, in
// production; in development it is logged (now and then) and nil.
func (a *auditor) unavailable(ctx context.Context, method string, cause error) error {
	if a.enforce {
		a.log.ErrorContext(ctx, "call refused: its audit record cannot be written", "method", method, "error", cause)
		return service.AuditUnavailableStatus(auditRetryAfter)
	}
	now := time.Now().UnixNano()
	if last := a.lastWarn.Load(); now-last >= int64(auditWarnEvery) && a.lastWarn.CompareAndSwap(last, now) {
		a.log.WarnContext(ctx, "audit record not written (development: the call goes on; production refuses it with AUDIT_UNAVAILABLE)",
			"method", method, "error", cause)
	}
	return nil
}

// before refuses, in production, a call that could not be audited, before
// it does anything.
func (a *auditor) before(ctx context.Context, method string) error {
	if err := a.w.Healthy(); err != nil {
		return a.unavailable(ctx, method, err)
	}
	return nil
}

// after writes the call's record, unless its write already committed it,
// and returns the call's final error: err, or AUDIT_UNAVAILABLE in
// production when the record cannot be written.
//
// NOTE: a call whose write committed with its record has that record only,
// saying OK, even should the call fail after it (its answer lost on the
// way): the write it records did happen.
func (a *auditor) after(ctx context.Context, rec *callRecord, resp any, err error) error {
	if rec.written.Load() {
		return err
	}
	method, start, req := rec.method, rec.start, rec.req
	ev := auditEvent(ctx, method, start, req, resp, err)
	var werr error
	if err == nil && auditWrites[method] && !alreadyAssigned(resp) {
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditCommitWait)
		werr = a.w.SubmitAndWait(wctx, ev)
		cancel()
	} else {
		werr = a.w.Submit(ev)
	}
	if werr != nil {
		if refusal := a.unavailable(ctx, method, werr); refusal != nil {
			return refusal
		}
	}
	return err
}

// alreadyAssigned reports a repeat AssignKey, which changed nothing.
func alreadyAssigned(resp any) bool {
	r, ok := resp.(*recoveryv1.AssignKeyResponse)
	return ok && r.GetAlreadyAssigned()
}

// unary is the audit position for unary calls.
func (a *auditor) unary() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if a == nil || auditExempt(info.FullMethod) {
			return handler(ctx, req)
		}
		start := time.Now()
		if refusal := a.before(ctx, info.FullMethod); refusal != nil {
			_ = a.w.Submit(auditEvent(ctx, info.FullMethod, start, req, nil, refusal))
			return nil, refusal
		}
		rec := &callRecord{a: a, method: info.FullMethod, start: start, req: req}
		resp, err := handler(service.WithCallRecorder(ctx, rec), req)
		if final := a.after(ctx, rec, resp, err); final != err { //nolint:errorlint // identity: was the call's error replaced?
			return nil, final
		}
		return resp, err
	}
}

// stream is the audit position for streaming calls; the record names what
// the response names (SecureFile's backup).
func (a *auditor) stream() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if a == nil || auditExempt(info.FullMethod) {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		start := time.Now()
		if refusal := a.before(ctx, info.FullMethod); refusal != nil {
			_ = a.w.Submit(auditEvent(ctx, info.FullMethod, start, nil, nil, refusal))
			return refusal
		}
		rec := &callRecord{a: a, method: info.FullMethod, start: start}
		as := &auditStream{ServerStream: ss, ctx: service.WithCallRecorder(ctx, rec)}
		err := handler(srv, as)
		return a.after(ctx, rec, as.sent.Load(), err)
	}
}

// callRecord is one call's record in the making: what after writes, unless
// the call's write committed it first (CommitHook).
type callRecord struct {
	a      *auditor
	method string
	start  time.Time
	req    any
	// written: the record committed with the call's write.
	written atomic.Bool
}

// CommitHook commits the call's write and its record in one transaction
// (audit.Writer.CommitWrite). When the record cannot go with it,
// production fails the write (it is not committed) and development commits
// it alone, warning, as it serves calls it cannot audit.
func (r *callRecord) CommitHook(ctx context.Context, subject service.WriteSubject) registry.CommitHook {
	return func(w registry.TxWrite) error {
		ev := withSubject(auditEvent(ctx, r.method, r.start, r.req, nil, nil), subject)
		err := r.a.w.CommitWrite(ctx, ev, w)
		switch {
		case err == nil:
			r.written.Store(true)
			return nil
		case !errors.Is(err, audit.ErrUnavailable):
			return err // the write's own failure
		case r.a.unavailable(ctx, r.method, err) != nil, r.a.writes == nil:
			return err
		}
		return r.a.writes.CommitWrite(ctx, w)
	}
}

// withSubject adds to ev what the write touches.
func withSubject(ev registry.AuditEvent, s service.WriteSubject) registry.AuditEvent {
	orgs := newOrgSet()
	for _, o := range ev.Organisations {
		orgs.add(o)
	}
	orgs.add(s.CustomerID)
	ev.Organisations = orgs.list
	for _, f := range [...]struct {
		to *string
		v  string
	}{
		{&ev.PackageID, s.PackageID}, {&ev.KeyID, s.KeyID}, {&ev.BackupID, s.BackupID},
	} {
		if v := printable(f.v); v != "" {
			*f.to = v
		}
	}
	return ev
}

// auditStream remembers the last message sent, and gives the handler the
// context that carries the call's record.
type auditStream struct {
	grpc.ServerStream
	ctx  context.Context
	sent atomicMessage
}

// Context is the call's context with its record.
func (s *auditStream) Context() context.Context { return s.ctx }

// SendMsg remembers m and sends it.
func (s *auditStream) SendMsg(m any) error {
	s.sent.Store(m)
	return s.ServerStream.SendMsg(m)
}

// atomicMessage holds one message (any) for another goroutine.
type atomicMessage struct{ v atomic.Value }

type boxed struct{ m any }

func (a *atomicMessage) Store(m any) { a.v.Store(boxed{m}) }

func (a *atomicMessage) Load() any {
	b, _ := a.v.Load().(boxed)
	return b.m
}

// tap records the calls the pre-authentication tap refuses from their
// headers alone, before any interceptor runs. Such records are offered
// (audit.Writer.Offer): a flood of unauthenticated calls is shed rather than
// allowed to make the writer too far behind for authenticated callers.
func (a *auditor) tap(inner tap.ServerInHandle) tap.ServerInHandle {
	if a == nil || inner == nil {
		return inner
	}
	return func(ctx context.Context, info *tap.Info) (context.Context, error) {
		out, err := inner(ctx, info)
		if err != nil && !auditExempt(info.FullMethodName) {
			_ = a.w.Offer(auditEvent(ctx, info.FullMethodName, time.Now(), nil, nil, err))
		}
		return out, err
	}
}

// auditEvent builds a call's record: who, what, for which organisation,
// key, backup and package, how it ended. It reads only identifiers, never a
// payload, checksum or token.
func auditEvent(ctx context.Context, method string, start time.Time, req, resp any, err error) registry.AuditEvent {
	st := status.Convert(err)
	ev := registry.AuditEvent{
		At:     start,
		Method: printable(method),
		Code:   codeName(st.Code()),
		Peer:   auditPeer(ctx),
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetDomain() == service.ErrorDomain {
			ev.Reason = info.GetReason()
		}
	}
	if sc := trace.SpanContextFromContext(ctx); sc.HasTraceID() {
		ev.TraceID = sc.TraceID().String()
	}
	if f := callFieldsFrom(ctx); f != nil {
		f.mu.Lock()
		ev.Caller, ev.KeyID, ev.BackupID = f.caller, f.keyID, f.backupID
		f.mu.Unlock()
	}
	orgs := newOrgSet()
	// NOTE: the request's identifiers only when it passed validation (an
	// invalid one may hold anything); the response's are the service's own.
	if st.Code() != codes.InvalidArgument {
		switch m := req.(type) {
		case *recoveryv1.AssignKeyRequest:
			orgs.add(m.GetOrganisation().GetCustomerId())
			ev.PackageID = m.GetPackage().GetPackageId()
		case *recoveryv1.ListKeysRequest:
			orgs.add(m.GetCustomerId())
		case *recoveryv1.ListBackupsRequest:
			orgs.add(m.GetCustomerId())
		}
	}
	switch m := resp.(type) {
	case *recoveryv1.AssignKeyResponse:
		orgs.add(m.GetKey().GetOrganisation().GetCustomerId())
		ev.PackageID = m.GetKey().GetPackage().GetPackageId()
	case *recoveryv1.GetKeyResponse:
		orgs.add(m.GetKey().GetOrganisation().GetCustomerId())
		ev.PackageID = m.GetKey().GetPackage().GetPackageId()
	case *recoveryv1.SecureDataResponse:
		orgs.add(m.GetBackup().GetCustomerId())
		ev.PackageID = m.GetBackup().GetPackageId()
		ev.KeyID, ev.BackupID = m.GetBackup().GetKeyId(), m.GetBackup().GetBackupId()
	case *recoveryv1.SecureFileResponse:
		orgs.add(m.GetBackup().GetCustomerId())
		ev.PackageID = m.GetBackup().GetPackageId()
		ev.KeyID, ev.BackupID = m.GetBackup().GetKeyId(), m.GetBackup().GetBackupId()
	case *recoveryv1.ListKeysResponse:
		for _, k := range m.GetKeys() {
			orgs.add(k.GetOrganisation().GetCustomerId())
		}
	case *recoveryv1.ListBackupsResponse:
		for _, b := range m.GetBackups() {
			orgs.add(b.GetCustomerId())
		}
	}
	ev.Organisations = orgs.list
	ev.PackageID = printable(ev.PackageID)
	return ev
}

// orgSet collects distinct organisations, at most maxAuditOrganisations.
type orgSet struct {
	seen map[string]bool
	list []string
}

func newOrgSet() *orgSet { return &orgSet{seen: map[string]bool{}} }

func (o *orgSet) add(id string) {
	id = printable(id)
	if id == "" || o.seen[id] || len(o.list) >= maxAuditOrganisations {
		return
	}
	o.seen[id] = true
	o.list = append(o.list, id)
}

// printable drops control and format characters from an identifier taken
// from a call, so a record reads as what it is.
func printable(s string) string {
	if strings.IndexFunc(s, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }) < 0 {
		return s
	}
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, s)
}

// auditPeer is the call's peer address ("" when unknown).
func auditPeer(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// codeName is the canonical name of a gRPC code (PERMISSION_DENIED), as
// grpcurl and the gRPC docs print it.
func codeName(c codes.Code) string {
	name := c.String() // "PermissionDenied", "OK"
	switch c {
	case codes.OK:
		return name
	case codes.Canceled:
		return "CANCELLED"
	}
	var b strings.Builder
	for i, r := range name {
		if i > 0 && unicode.IsUpper(r) {
			b.WriteByte('_')
		}
		b.WriteRune(unicode.ToUpper(r))
	}
	return b.String()
}

// ErrAuditChainBroken is VerifyAudit's answer for a chain that does not
// verify.
var ErrAuditChainBroken = errors.New("the audit trail does not verify")

// VerifyAudit is `recoveryd --verify-audit`: it opens the registry cfg
// names, verifies every audit chain, and writes the report to out. It
// returns an error wrapping ErrAuditChainBroken when a link is broken.
func VerifyAudit(ctx context.Context, cfg Config, log *slog.Logger, out io.Writer) error {
	if err := cfg.Validate(); err != nil {
		return &ConfigError{Problems: err}
	}
	store, err := openRegistry(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	rep, err := store.VerifyAudit(ctx)
	if err != nil {
		return fmt.Errorf("verifying the audit trail: %w", err)
	}
	if rep.Broken != nil {
		fmt.Fprintf(out, "audit trail BROKEN: %s (%d records in %d chains checked)\n", rep.Broken, rep.Records, rep.Chains)
		return fmt.Errorf("%w: %s", ErrAuditChainBroken, rep.Broken)
	}
	fmt.Fprintf(out, "audit trail OK: %d records in %d chains, %d checkpoint and prune records, every link verified\n",
		rep.Records, rep.Chains, rep.Checkpoints)
	return nil
}
