package app

import (
	"bytes"
	"context"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/testing/protocmp"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/keycrypto"
	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
	"github.com/walletprovider/recoveryservice/upstream/sandbox/sandboxtest"
)

// replicaConfig is the Config of one replica: the shared upstream, the
// shared PostgreSQL at dbURL, a data directory of its own.
func replicaConfig(t *testing.T, up *sandboxtest.Sandbox, dbURL string) Config {
	t.Helper()
	base := remoteConfig(t, up, t.TempDir())
	cfg := base
	cfg.DatabaseURL = dbURL
	return cfg
}

// TestReplicasSharePostgreSQL runs DESIGN's scale-out shape: two recoveryd
// replicas, each built by run from its own flags, sharing one PostgreSQL
// database and one upstream, with callers spread over both.
func TestReplicasSharePostgreSQL(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	dbURL := registrytest.Postgres(t)
	cfgA, cfgB := replicaConfig(t, up, dbURL), replicaConfig(t, up, dbURL)
	// NOTE: one registry HMAC key for both, as production mounts one
	// Secret in every replica: an idempotency key must match on either.
	cfgA.RegistryHMACKeyFile = writeRegistryHMACKey(t)
	cfgB.RegistryHMACKeyFile = cfgA.RegistryHMACKeyFile
	// Started together, so their migrations of the empty database meet.
	a := startServer(t, cfgA, log.With("replica", "A"), Options{})
	b := startServer(t, cfgB, log.With("replica", "B"), Options{})
	a.waitServing(t)
	b.waitServing(t)
	replicas := []*testServer{a, b}
	ctx := testCtx(t)

	// Callers of one customer race, alternating between the replicas: one
	// upstream assignment, one key for everyone, one fresh answer.
	var (
		wg        sync.WaitGroup
		start     = make(chan struct{})
		responses = make([]*recoveryv1.AssignKeyResponse, concurrentCallers)
		errs      = make([]error, concurrentCallers)
	)
	for i := range concurrentCallers {
		wg.Go(func() {
			<-start
			responses[i], errs[i] = replicas[i%2].client.AssignKey(ctx,
				assignKeyRequest("user-on-two-replicas", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_COLD))
		})
	}
	close(start)
	wg.Wait()
	var raced *recoveryv1.RecoveryKey
	fresh := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d (replica %c): %v", i, 'A'+i%2, err)
		}
		if !responses[i].GetAlreadyAssigned() {
			fresh++
		}
		if raced == nil {
			raced = responses[i].GetKey()
		} else if !proto.Equal(responses[i].GetKey(), raced) {
			t.Errorf("caller %d (replica %c) got key %v, caller 0 got %v", i, 'A'+i%2, responses[i].GetKey(), raced)
		}
	}
	if fresh != 1 {
		t.Errorf("%d responses say the key was newly assigned, want exactly 1", fresh)
	}
	if upstreamKeys := up.Inspect.Keys(t); len(upstreamKeys) != 1 || upstreamKeys[0].KeyID != raced.GetKeyId() {
		t.Fatalf("upstream keys = %+v, want just %s", upstreamKeys, raced.GetKeyId())
	}

	// A key assigned on A is B's too: GetKey, a repeat AssignKey (no
	// upstream call) and SecureData to it on B.
	onA := assignKey(t, ctx, a.client, "user-assigned-on-a")
	got, err := b.client.GetKey(ctx, &recoveryv1.GetKeyRequest{KeyId: onA.GetKeyId()})
	if err != nil {
		t.Fatalf("GetKey on B of a key assigned on A: %v", err)
	}
	if !proto.Equal(got.GetKey(), onA) {
		t.Errorf("GetKey on B = %v, want A's %v", got.GetKey(), onA)
	}
	repeat, err := b.client.AssignKey(ctx, assignKeyRequest("user-assigned-on-a", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		t.Fatalf("repeat AssignKey on B: %v", err)
	}
	if !repeat.GetAlreadyAssigned() || !proto.Equal(repeat.GetKey(), onA) {
		t.Errorf("repeat AssignKey on B = %v, want A's key, already_assigned", repeat)
	}
	if n := len(up.Inspect.Keys(t)); n != 2 {
		t.Errorf("upstream holds %d keys, want 2 (the repeat on B must not call it)", n)
	}
	secret := []byte("seed words stored through replica B")
	data, err := b.client.SecureData(ctx, secureDataByKeyID(onA.GetKeyId(), bytes.Clone(secret)))
	if err != nil {
		t.Fatalf("SecureData on B to A's key: %v", err)
	}
	checkBackup(t, data.GetBackup(), onA, recoveryv1.BackupType_BACKUP_TYPE_DATA, keycrypto.Checksum(secret), keycrypto.CiphertextLen)
	if got := up.Inspect.Recover(t, data.GetBackup().GetBackupId()); !bytes.Equal(got, secret) {
		t.Errorf("upstream recovered %q, want %q", got, secret)
	}

	// A retry that lands on the other replica is a repeat: same backup, and
	// the upstream holds it once.
	retried := secureDataByKeyID(onA.GetKeyId(), []byte("share 1 of 2, retried on the other replica"))
	retried.IdempotencyKey = "replica-retry-1"
	first, err := a.client.SecureData(ctx, proto.CloneOf(retried))
	if err != nil {
		t.Fatalf("SecureData on A with an idempotency key: %v", err)
	}
	second, err := b.client.SecureData(ctx, proto.CloneOf(retried))
	if err != nil {
		t.Fatalf("the same SecureData retried on B: %v", err)
	}
	if !proto.Equal(second.GetBackup(), first.GetBackup()) {
		t.Errorf("retry on B = %v, want A's backup %v", second.GetBackup(), first.GetBackup())
	}
	var upstreamIDs []string
	for _, sb := range up.Inspect.Backups(t) {
		upstreamIDs = append(upstreamIDs, sb.BackupID)
	}
	slices.Sort(upstreamIDs)
	wantIDs := []string{data.GetBackup().GetBackupId(), first.GetBackup().GetBackupId()}
	slices.Sort(wantIDs)
	if diff := cmp.Diff(wantIDs, upstreamIDs); diff != "" {
		t.Errorf("upstream backups (-want +got):\n%s", diff)
	}

	// The listings agree on both replicas, and a page token from one pages
	// on the other (a load balancer may send the next page anywhere).
	listKeys := func(s *testServer) []*recoveryv1.RecoveryKey {
		resp, err := s.client.ListKeys(ctx, &recoveryv1.ListKeysRequest{CustomerId: testCustomerID})
		if err != nil {
			t.Fatalf("ListKeys: %v", err)
		}
		return resp.GetKeys()
	}
	wantKeys := []*recoveryv1.RecoveryKey{onA, raced} // newest first
	for i, s := range replicas {
		if diff := cmp.Diff(wantKeys, listKeys(s), protocmp.Transform()); diff != "" {
			t.Errorf("ListKeys on replica %c (-want +got):\n%s", 'A'+i, diff)
		}
	}
	listBackups := func(s *testServer, pageSize int32, token string) *recoveryv1.ListBackupsResponse {
		resp, err := s.client.ListBackups(ctx, &recoveryv1.ListBackupsRequest{CustomerId: testCustomerID, PageSize: pageSize, PageToken: token})
		if err != nil {
			t.Fatalf("ListBackups: %v", err)
		}
		return resp
	}
	// A listing shows each backup as recorded: a FILE backup with the
	// digest of its bytes as the upstream holds them, a DATA backup with no
	// checksum at all, never the plaintext checksum its sender was answered
	// with.
	storedDigest := map[string]string{}
	for _, b := range up.Inspect.Backups(t) {
		if b.BackupType == "file" {
			storedDigest[b.BackupID] = b.SHA256
		}
	}
	asListed := func(b *recoveryv1.Backup) *recoveryv1.Backup {
		out := proto.Clone(b).(*recoveryv1.Backup)
		out.ChecksumSha256 = storedDigest[b.GetBackupId()]
		return out
	}
	wantBackups := []*recoveryv1.Backup{asListed(first.GetBackup()), asListed(data.GetBackup())} // newest first
	for i, s := range replicas {
		if diff := cmp.Diff(wantBackups, listBackups(s, 0, "").GetBackups(), protocmp.Transform()); diff != "" {
			t.Errorf("ListBackups on replica %c (-want +got):\n%s", 'A'+i, diff)
		}
	}
	page1 := listBackups(a, 1, "")
	page2 := listBackups(b, 1, page1.GetNextPageToken())
	paged := append(page1.GetBackups(), page2.GetBackups()...)
	if diff := cmp.Diff(wantBackups, paged, protocmp.Transform()); diff != "" || page2.GetNextPageToken() != "" {
		t.Errorf("ListBackups paged A then B (-want +got):\n%s (next token after page 2: %q)", diff, page2.GetNextPageToken())
	}

	// What they share is the database: it holds every record, and neither
	// replica kept a SQLite registry of its own.
	wantRows := []string{onA.GetKeyId(), raced.GetKeyId()}
	slices.Sort(wantRows)
	if diff := cmp.Diff(wantRows, queryColumn(t, dbURL, `SELECT key_id FROM keys WHERE state = 'assigned' ORDER BY key_id`)); diff != "" {
		t.Errorf("PostgreSQL keys (-want +got):\n%s", diff)
	}
	if got := queryColumn(t, dbURL, `SELECT state FROM keys WHERE state <> 'assigned'`); len(got) != 0 {
		t.Errorf("PostgreSQL holds keys rows in states %q; want every row assigned", got)
	}
	if diff := cmp.Diff(wantIDs, queryColumn(t, dbURL, `SELECT backup_id FROM backups ORDER BY backup_id`)); diff != "" {
		t.Errorf("PostgreSQL backups (-want +got):\n%s", diff)
	}
	for i, cfg := range []Config{cfgA, cfgB} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, registryFileName)); !os.IsNotExist(err) {
			t.Errorf("replica %c has a SQLite registry in its data dir (stat: %v)", 'A'+i, err)
		}
	}
}

// queryColumn runs query on its own connection to dbURL and returns the
// first column of every row, as text.
func queryColumn(t *testing.T, dbURL, query string) []string {
	t.Helper()
	ctx := testCtx(t)
	conn, err := pgx.Connect(ctx, dbURL)
	if err != nil {
		t.Fatalf("connect to the test PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	rows, err := conn.Query(ctx, query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

// withPassword returns dbURL carrying a password, and that password: the
// URL's own, or (the test server trusts loopback connections, so it is
// carried but never checked) one added here.
func withPassword(t *testing.T, dbURL string) (string, string) {
	t.Helper()
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != schemePostgres && u.Scheme != schemePostgreSQL) {
		t.Fatalf("recoveryd takes postgres:// database URLs; give %s in that form", registrytest.URLEnv)
	}
	if password, ok := u.User.Password(); ok && password != "" {
		return dbURL, password
	}
	const password = "replica-db-pa55word"
	u.User = url.UserPassword(u.User.Username(), password)
	return u.String(), password
}

// TestRunOnPostgreSQL: run with --database-url postgres://… serves, and what
// it prints about its configuration hides the database password.
func TestRunOnPostgreSQL(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	dbURL, password := withPassword(t, registrytest.Postgres(t))
	stderr := &sandboxtest.LogBuffer{Mirror: t.Output()}
	srv := startReady(t, replicaConfig(t, up, dbURL), log, Options{Stderr: stderr})
	ctx := testCtx(t)

	health, err := srv.health.Check(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil || health.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health of %s = %v, %v; want SERVING", serviceName, health, err)
	}
	// Serving means the registry answers: a key goes through it.
	if key := assignKey(t, ctx, srv.client, "user-on-postgres"); len(queryColumn(t, dbURL, `SELECT key_id FROM keys WHERE key_id = '`+key.GetKeyId()+`'`)) != 1 {
		t.Errorf("key %s is not in PostgreSQL", key.GetKeyId())
	}

	// The config dump names the database, password redacted.
	var dumped string
	for line := range strings.Lines(logs.String()) {
		var rec struct {
			Msg    string `json:"msg"`
			Config struct {
				DatabaseURL string `json:"database_url"`
			} `json:"config"`
		}
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "starting recoveryd" {
			dumped = rec.Config.DatabaseURL
		}
	}
	// NOTE: "[redacted]" is not valid in a URL's userinfo, so the dump is
	// compared as text: the URL given, with the marker for the password.
	u, _ := url.Parse(dbURL)
	want := u.Scheme + "://" + url.User(u.User.Username()).String() + ":" + redacted + "@" + dbURL[strings.LastIndex(dbURL, "@")+1:]
	if dumped != want {
		t.Errorf("config dump's database_url = %q, want %q", dumped, want)
	}
	for name, out := range map[string]string{"log": logs.String(), "stderr": stderr.String()} {
		if strings.Contains(out, password) {
			t.Errorf("the %s shows the database password", name)
		}
	}
}
