package app

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"testing"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/upstream"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// The benchmarks in this file measure what recoveryd adds to a call. Each is
// a pair run side by side on one stack (the real server builder over
// bufconn, the real emulator behind a loopback HTTP server): sub-benchmark
// impl=ours goes through recoveryd, impl=baseline does the same work
// without it. bench/run.sh reports ours as a ratio of its baseline.

const (
	// benchUser is the one downstream customer the benchmarks assign a key to.
	benchUser = "bench-user"
	// benchFileBytes is the SecureFile payload: 8 MiB, most of the
	// upstream's 10 MiB limit.
	benchFileBytes = 8 << 20
	// benchChunkBytes is the SecureFile chunk size, the largest a chunk
	// message may carry.
	benchChunkBytes = 1 << 20
)

// benchStack is recoveryd on the emulator, an upstream client talking to the
// same emulator directly, and a key assigned (and verified) through
// recoveryd.
type benchStack struct {
	srv    *testServer
	direct *upstream.Client
	key    *recoveryv1.RecoveryKey
}

// newBenchStack starts the stack for one benchmark. Logs are formatted as in
// production and discarded, so their cost counts but the output stays clean.
//
// NOTE: the emulator keeps its state in memory. Persisted, it rewrites its
// whole state file (every backup so far) and fsyncs on each store, so a call
// would get slower the more calls came before it, and the second half of a
// pair would pay for the first.
func newBenchStack(b *testing.B) *benchStack {
	b.Helper()
	log := NewLogger(io.Discard, slog.LevelInfo)
	up := startUpstream(b, "", log, nil)
	cfg := remoteConfig(b, up, b.TempDir())
	cfg.AdminListen = "" // nothing scrapes it here
	srv := startReady(b, cfg, log, Options{})

	// The baseline client gets the same transport settings as recoveryd's
	// (the adapter's default is a clone of http.DefaultTransport); keeping a
	// handle lets cleanup close its idle connections.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	b.Cleanup(transport.CloseIdleConnections)
	direct, err := upstream.NewClient(upstream.Config{
		BaseURL:   up.HTTP.URL,
		Token:     sandbox.DevPartnerToken,
		Transport: transport,
		AllowHTTP: true,
		Logger:    log,
	})
	if err != nil {
		b.Fatal(err)
	}
	resp, err := srv.client.AssignKey(b.Context(), assignKeyRequest(benchUser, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		b.Fatalf("AssignKey: %v", err)
	}
	return &benchStack{srv: srv, direct: direct, key: resp.GetKey()}
}

// BenchmarkSecureData stores one sealed 512-byte block: through recoveryd
// over gRPC (key looked up in the registry, validation, the upstream call,
// the backup recorded) against the same upload made directly with
// upstream.Client.SecureData. Both make the emulator decrypt the block with
// its RSA-4096 private key to check the checksum.
func BenchmarkSecureData(b *testing.B) {
	st := newBenchStack(b)
	ctx := b.Context()
	pub, err := keycrypto.ParsePublicKeyHex(st.key.GetPublicKeyHex())
	if err != nil {
		b.Fatal(err)
	}
	secret := []byte("share 2 of 3: 8f1c0b7e 4d2a9c61 e07b3f58")
	ciphertext, err := keycrypto.Encrypt(rand.Reader, pub, secret)
	if err != nil {
		b.Fatal(err)
	}
	checksum := keycrypto.Checksum(secret)

	b.Run("impl=baseline", func(b *testing.B) {
		req := upstream.SecureDataRequest{
			PublicKey:  st.key.GetPublicKeyHex(),
			Ciphertext: ciphertext,
			Checksum:   checksum,
			Metadata:   upstream.Metadata{Description: "seed phrase", ContentType: "text/plain"},
		}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := st.direct.SecureData(ctx, req)
			if err != nil || resp.BackupID == "" {
				b.Fatalf("upstream SecureData: %+v, %v", resp, err)
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		req := &recoveryv1.SecureDataRequest{
			Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: st.key.GetKeyId()},
			Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
				Ciphertext: ciphertext, ChecksumSha256: checksum,
			}},
			Metadata: &recoveryv1.BackupMetadata{Description: "seed phrase", ContentType: "text/plain"},
		}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := st.srv.client.SecureData(ctx, req)
			if err != nil || resp.GetBackup().GetBackupId() == "" || resp.GetBackup().GetChecksumSha256() != checksum {
				b.Fatalf("recoveryd SecureData: %v, %v", resp, err)
			}
		}
	})
}

// BenchmarkAssignKeyRepeat is AssignKey for a user whose key is already
// recorded (the registry answers, upstream is not called) against a gRPC
// health Check on the same server: the baseline is a bare round trip
// through the same connection and interceptor chain.
func BenchmarkAssignKeyRepeat(b *testing.B) {
	st := newBenchStack(b)
	ctx := b.Context()

	b.Run("impl=baseline", func(b *testing.B) {
		req := &healthpb.HealthCheckRequest{Service: serviceName}
		b.ReportAllocs()
		for b.Loop() {
			resp, err := st.srv.health.Check(ctx, req)
			if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				b.Fatalf("health Check: %v, %v", resp, err)
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		req := assignKeyRequest(benchUser, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
		b.ReportAllocs()
		for b.Loop() {
			resp, err := st.srv.client.AssignKey(ctx, req)
			if err != nil || !resp.GetAlreadyAssigned() || resp.GetKey().GetKeyId() != st.key.GetKeyId() {
				b.Fatalf("repeat AssignKey: %v, %v", resp, err)
			}
		}
	})
}

// BenchmarkSecureFile streams an 8 MiB encrypted file: through recoveryd as
// a header and 1 MiB chunk messages (hashed on the fly, checked against the
// declared size and digest, forwarded as a chunked multipart body) against
// upstream.Client.SecureFile reading the same bytes directly. Throughput is
// reported as MB/s.
func BenchmarkSecureFile(b *testing.B) {
	st := newBenchStack(b)
	ctx := b.Context()
	file := make([]byte, benchFileBytes)
	if _, err := rand.Read(file); err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(file)
	digest := hex.EncodeToString(sum[:])
	var chunks [][]byte
	for off := 0; off < len(file); off += benchChunkBytes {
		chunks = append(chunks, file[off:min(off+benchChunkBytes, len(file))])
	}

	b.Run("impl=baseline", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchFileBytes)
		for b.Loop() {
			resp, err := st.direct.SecureFile(ctx, upstream.SecureFileRequest{
				PublicKey: st.key.GetPublicKeyHex(),
				Metadata:  upstream.Metadata{Description: "key share backup", ContentType: "application/octet-stream", OriginalFilename: "share.bin"},
				File:      bytes.NewReader(file),
			})
			if err != nil || resp.BackupID == "" {
				b.Fatalf("upstream SecureFile: %+v, %v", resp, err)
			}
		}
	})
	b.Run("impl=ours", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(benchFileBytes)
		for b.Loop() {
			header := fileHeader(st.key.GetKeyId())
			size := int64(benchFileBytes)
			header.GetHeader().SizeBytes = &size
			header.GetHeader().Sha256 = digest
			resp, err := sendFile(ctx, st.srv.client, header, chunks...)
			if err != nil || resp.GetBackup().GetSizeBytes() != benchFileBytes || resp.GetBackup().GetChecksumSha256() != digest {
				b.Fatalf("recoveryd SecureFile: %v, %v", resp, err)
			}
		}
	})
}

// auditSide is one half of an audit pair: a server, the AssignKey request
// that assigned its user a key, and that key.
type auditSide struct {
	srv    *testServer
	assign *recoveryv1.AssignKeyRequest
	key    *recoveryv1.RecoveryKey
}

// auditPair starts two servers on one emulator (which skips its RSA check
// of secure/data, the same for both), each with its own SQLite registry
// and a user of its own with a key: plain with auditing off, audited with
// every call audited.
func auditPair(b *testing.B) (plain, audited auditSide) {
	b.Helper()
	log := NewLogger(io.Discard, slog.LevelInfo)
	up := startUpstreamWith(b, upstreamOptions{log: log, skipDataVerification: true})
	start := func(disableAudit bool, user string) auditSide {
		cfg := remoteConfig(b, up, b.TempDir())
		cfg.AdminListen = ""
		srv := startReady(b, cfg, log, Options{DisableAudit: disableAudit})
		req := assignKeyRequest(user, recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT)
		resp, err := srv.client.AssignKey(b.Context(), req)
		if err != nil {
			b.Fatalf("AssignKey: %v", err)
		}
		return auditSide{srv: srv, assign: req, key: resp.GetKey()}
	}
	return start(true, benchUser+"-unaudited"), start(false, benchUser+"-audited")
}

// BenchmarkAssignKeyRepeatAudit is what the audit trail costs a repeat
// AssignKey: impl=ours on a server that audits every call (the group
// writer commits the records), impl=baseline on one that does not, both on
// the same emulator, each with its own SQLite registry and its own user.
func BenchmarkAssignKeyRepeatAudit(b *testing.B) {
	plain, audited := auditPair(b)
	run := func(side auditSide) func(b *testing.B) {
		return func(b *testing.B) {
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := side.srv.client.AssignKey(ctx, side.assign)
				if err != nil || !resp.GetAlreadyAssigned() {
					b.Fatalf("repeat AssignKey: %v, %v", resp, err)
				}
			}
		}
	}
	b.Run("impl=baseline", run(plain))
	b.Run("impl=ours", run(audited))
}

// BenchmarkSecureDataAudit is what the audit trail costs a write: a
// SecureData of a sealed block (one backup recorded, durably) on a server
// that audits every call, where the backup and the call's record commit
// in one transaction, against the same on a server with auditing off.
func BenchmarkSecureDataAudit(b *testing.B) {
	plain, audited := auditPair(b)
	secret := []byte("share 2 of 3: 8f1c0b7e 4d2a9c61 e07b3f58")
	checksum := keycrypto.Checksum(secret)
	run := func(side auditSide) func(b *testing.B) {
		return func(b *testing.B) {
			pub, err := keycrypto.ParsePublicKeyHex(side.key.GetPublicKeyHex())
			if err != nil {
				b.Fatal(err)
			}
			ciphertext, err := keycrypto.Encrypt(rand.Reader, pub, secret)
			if err != nil {
				b.Fatal(err)
			}
			req := &recoveryv1.SecureDataRequest{
				Key: &recoveryv1.SecureDataRequest_KeyId{KeyId: side.key.GetKeyId()},
				Payload: &recoveryv1.SecureDataRequest_Sealed{Sealed: &recoveryv1.SealedPayload{
					Ciphertext: ciphertext, ChecksumSha256: checksum,
				}},
				Metadata: &recoveryv1.BackupMetadata{Description: "seed phrase", ContentType: "text/plain"},
			}
			ctx := b.Context()
			b.ReportAllocs()
			for b.Loop() {
				resp, err := side.srv.client.SecureData(ctx, req)
				if err != nil || resp.GetBackup().GetBackupId() == "" {
					b.Fatalf("SecureData: %v, %v", resp, err)
				}
			}
		}
	}
	b.Run("impl=baseline", run(plain))
	b.Run("impl=ours", run(audited))
}
