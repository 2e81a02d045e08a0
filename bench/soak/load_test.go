package soak

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// The load's request terms and sizes.
const (
	customerName = "Soak Wallets Ltd"
	packageID    = "pkg-soak"
	packageName  = "Soak recovery"
	// fileBytes is each SecureFile: three chunks of at most chunkBytes,
	// the last one short (16 KiB is the chunk minimum, except the last).
	fileBytes  = 40 << 10
	chunkBytes = 16 << 10
	// callTimeout bounds one call of the load (a caller's deadline).
	callTimeout = 30 * time.Second
	// outageBackoff is how long a caller waits after a call the transport
	// failed (recoveryd down), so an outage does not spin the callers.
	outageBackoff = 100 * time.Millisecond
)

// rpc names the three operations of the load.
type rpc string

const (
	rpcAssign rpc = "AssignKey"
	rpcData   rpc = "SecureData"
	rpcFile   rpc = "SecureFile"
)

var rpcs = []rpc{rpcAssign, rpcData, rpcFile}

// call is one call of the load: what was asked and what came back.
type call struct {
	kind rpc
	// user is the new pair's user_identifier (AssignKey).
	user string
	// idempotencyKey and content of a store, which a retry repeats.
	idempotencyKey string
	content        []byte
	started        time.Time
	err            error
	// id is the key_id (AssignKey) or backup_id (stores) of an OK answer.
	id string
	// retryID is the backup_id of a store that failed during the load and
	// was acknowledged when retried after it with its idempotency key.
	retryID string
}

func (cl *call) name() string { return string(cl.kind) + " " + cl.user + cl.idempotencyKey }

// outcome is "OK", or the code and reason of the failure.
func (cl *call) outcome() string {
	if cl.err == nil {
		return "OK"
	}
	if r := reasonOf(cl.err); r != "" {
		return status.Code(cl.err).String() + " " + r
	}
	return status.Code(cl.err).String()
}

// loadConfig says what one phase's load does.
type loadConfig struct {
	customerID string
	prefix     string
	keyID      string // the key the stores use
	listen     string // recoveryd's fixed address
	duration   time.Duration
	workers    int
	conns      int
	assigns    int // new pairs at most
	// waitForReady: calls wait for a connection instead of failing while
	// recoveryd is down (the load's callers; not the checks after it).
	waitForReady bool
}

// load is a running mixed load.
type load struct {
	cfg     loadConfig
	mu      sync.Mutex
	calls   []*call
	seq     atomic.Int64
	assigns atomic.Int64
	wg      sync.WaitGroup
}

// startLoad runs cfg.workers callers over cfg.conns connections of their
// own (they reconnect to the same address after a restart) for
// cfg.duration: about 10% new AssignKeys (at most cfg.assigns), 15%
// SecureFile, the rest SecureData, each store with an idempotency key of
// its own.
func startLoad(ctx context.Context, cfg loadConfig) (*load, error) {
	cfg.waitForReady = true
	l := &load{cfg: cfg}
	l.assigns.Store(int64(cfg.assigns))
	var clients []recoveryv1.RecoveryServiceClient
	var conns []*grpc.ClientConn
	for range cfg.conns {
		// NOTE: reconnects every 100 ms at most 1 s apart, as a caller
		// tuned for a restarting replica would; grpc-go's default backoff
		// grows to 2 minutes and would keep failing calls long after the
		// restart, measuring the client instead of recoveryd.
		conn, err := grpc.NewClient("passthrough:///"+cfg.listen, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
				MinConnectTimeout: 5 * time.Second,
			}))
		if err != nil {
			return nil, err
		}
		conns = append(conns, conn)
		clients = append(clients, recoveryv1.NewRecoveryServiceClient(conn))
	}
	end := time.Now().Add(cfg.duration)
	var workers sync.WaitGroup
	for w := range cfg.workers {
		c := clients[w%len(clients)]
		workers.Go(func() {
			rng := mrand.New(mrand.NewPCG(uint64(w), 42)) //nolint:gosec // the mix of calls, not a secret
			for time.Now().Before(end) && ctx.Err() == nil {
				cl := l.next(rng)
				cl.run(ctx, c, cfg)
				l.mu.Lock()
				l.calls = append(l.calls, cl)
				l.mu.Unlock()
				if cl.err != nil && status.Code(cl.err) == codes.Unavailable && reasonOf(cl.err) == "" {
					time.Sleep(outageBackoff)
				}
			}
		})
	}
	l.wg.Go(func() {
		workers.Wait()
		for _, conn := range conns {
			_ = conn.Close()
		}
	})
	return l, nil
}

// wait waits for the load to end and returns its calls.
func (l *load) wait() []*call {
	l.wg.Wait()
	return l.calls
}

// next is a new call of the mix.
func (l *load) next(rng *mrand.Rand) *call {
	n := l.seq.Add(1)
	switch p := rng.Float64(); {
	case p < 0.10 && l.assigns.Add(-1) >= 0:
		return &call{kind: rpcAssign, user: fmt.Sprintf("%s-user-%d", l.cfg.prefix, n)}
	case p >= 0.85:
		content := make([]byte, fileBytes)
		_, _ = rand.Read(content)
		return &call{kind: rpcFile, idempotencyKey: fmt.Sprintf("%s-file-%d", l.cfg.prefix, n), content: content}
	default:
		content := make([]byte, 32)
		_, _ = rand.Read(content)
		return &call{kind: rpcData, idempotencyKey: fmt.Sprintf("%s-data-%d", l.cfg.prefix, n), content: content}
	}
}

// run makes the call once, with the caller's deadline.
func (cl *call) run(ctx context.Context, c recoveryv1.RecoveryServiceClient, cfg loadConfig) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	cl.started = time.Now()
	// NOTE: wait-for-ready, as a caller of a restarting service should: a
	// call made while recoveryd is down waits (within its deadline) for
	// it to come back instead of failing at once.
	ready := grpc.WaitForReady(cfg.waitForReady)
	switch cl.kind {
	case rpcAssign:
		resp, err := c.AssignKey(ctx, assignRequest(cfg.customerID, cl.user), ready)
		cl.err, cl.id = err, resp.GetKey().GetKeyId()
	case rpcData:
		resp, err := c.SecureData(ctx, &recoveryv1.SecureDataRequest{
			Key:            &recoveryv1.SecureDataRequest_KeyId{KeyId: cfg.keyID},
			Payload:        &recoveryv1.SecureDataRequest_Plaintext{Plaintext: cl.content},
			Metadata:       &recoveryv1.BackupMetadata{Description: "soak seed", ContentType: "application/octet-stream"},
			IdempotencyKey: cl.idempotencyKey,
		}, ready)
		cl.err, cl.id = err, resp.GetBackup().GetBackupId()
	case rpcFile:
		resp, err := sendFile(ctx, c, cfg.keyID, cl.idempotencyKey, cl.content, ready)
		cl.err, cl.id = err, resp.GetBackup().GetBackupId()
	}
}

func assignRequest(customerID, user string) *recoveryv1.AssignKeyRequest {
	return &recoveryv1.AssignKeyRequest{
		UserIdentifier: user,
		KeyEnvironment: recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT,
		Organisation:   &recoveryv1.Organisation{CustomerId: customerID, CustomerName: customerName},
		Package:        &recoveryv1.Package{PackageId: packageID, PackageName: packageName},
	}
}

// sendFile uploads content in chunkBytes chunks, with its size, digest and
// idempotency key in the header.
func sendFile(ctx context.Context, c recoveryv1.RecoveryServiceClient, keyID, idempotencyKey string, content []byte, opts ...grpc.CallOption) (*recoveryv1.SecureFileResponse, error) {
	stream, err := c.SecureFile(ctx, opts...)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(content)
	size := int64(len(content))
	msgs := []*recoveryv1.SecureFileRequest{{Msg: &recoveryv1.SecureFileRequest_Header{Header: &recoveryv1.SecureFileHeader{
		Key:            &recoveryv1.SecureFileHeader_KeyId{KeyId: keyID},
		Metadata:       &recoveryv1.BackupMetadata{Description: "soak file", ContentType: "application/octet-stream"},
		SizeBytes:      &size,
		Sha256:         hex.EncodeToString(sum[:]),
		IdempotencyKey: idempotencyKey,
	}}}}
	for rest := content; len(rest) > 0; {
		n := min(len(rest), chunkBytes)
		msgs = append(msgs, &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: rest[:n]}})
		rest = rest[n:]
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			break // the server ended the call early: CloseAndRecv has why
		}
	}
	return stream.CloseAndRecv()
}

// reasonOf is the ErrorInfo reason of err, "" when it has none (a status
// the transport made, not the service).
func reasonOf(err error) string {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// retryDelay is the RetryInfo delay of err, or def when it has none.
func retryDelay(err error, def time.Duration) time.Duration {
	st, _ := status.FromError(err)
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.RetryInfo); ok && info.GetRetryDelay().AsDuration() > 0 {
			return info.GetRetryDelay().AsDuration()
		}
	}
	return def
}
