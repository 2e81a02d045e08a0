package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/walletprovider/recoveryservice/service/registry/registrytest"
	"github.com/walletprovider/recoveryservice/upstream/sandbox"
)

// testProbeInterval re-probes fast enough that an outage shows at once; it
// paces the server, and no assertion depends on it.
const testProbeInterval = 20 * time.Millisecond

// outageDatabase is a PostgreSQL database of the test's own, on the test
// server, that can be taken down and brought back for real: down refuses
// new connections to it and terminates the ones open, as a database
// restart or a failover does; recoveryd's pool finds its connections dead
// and cannot open new ones. Other tests' databases are untouched.
type outageDatabase struct {
	name  string
	url   string // what recoveryd connects with
	admin string // a database on the same server, to run the outage from
}

// newOutageDatabase creates the database and drops it at cleanup (register
// it before anything that connects to it, so that is closed first).
func newOutageDatabase(t *testing.T) *outageDatabase {
	t.Helper()
	base, err := url.Parse(registrytest.Postgres(t))
	if err != nil || base.Scheme == "" {
		t.Fatalf("the test PostgreSQL's address is not a URL (%v); this test needs a postgres:// URL", err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	db := &outageDatabase{name: "health_" + hex.EncodeToString(suffix), admin: base.String()}
	db.exec(t, `CREATE DATABASE `+db.name)
	t.Cleanup(func() { db.exec(t, `DROP DATABASE `+db.name+` WITH (FORCE)`) })

	own := *base
	own.Path = "/" + db.name
	q := own.Query()
	q.Del("search_path") // the schema registrytest made lives in the other database
	own.RawQuery = q.Encode()
	// The test server trusts loopback connections and ignores a password;
	// recoveryd is given one anyway, so the test can see it never shows.
	own.User = url.UserPassword(base.User.Username(), outagePassword)
	db.url = own.String()
	return db
}

// down makes the database unreachable: new connections are refused, open
// ones are terminated.
func (db *outageDatabase) down(t *testing.T) {
	t.Helper()
	db.exec(t, `ALTER DATABASE `+db.name+` ALLOW_CONNECTIONS false`)
	db.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+db.name+`'`)
}

// dropConnections terminates the open connections to the database and
// lets new ones in, as a restart that is already over (or an idle timeout)
// leaves a pool: every idle connection dead, the database fine.
func (db *outageDatabase) dropConnections(t *testing.T) {
	t.Helper()
	db.exec(t, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+db.name+`'`)
}

// outagePassword is the password in outageDatabase's URL: a stand-in for a
// real one, which /readyz and the logs must never show.
const outagePassword = "readyz-must-not-print-this"

// up lets connections in again.
func (db *outageDatabase) up(t *testing.T) {
	t.Helper()
	db.exec(t, `ALTER DATABASE `+db.name+` ALLOW_CONNECTIONS true`)
}

func (db *outageDatabase) exec(t *testing.T, statement string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testDeadline)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.admin)
	if err != nil {
		t.Fatalf("connecting to the test PostgreSQL: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, statement); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}

// TestHealthFollowsTheRegistry takes the PostgreSQL registry down and
// back, twice, under a SERVING recoveryd: health (Check, a Watch stream and
// /readyz) turns NOT_SERVING while the database is down and SERVING again
// once it is back, with one log line and one count per change however many
// probes fail. Connections the database dropped while it stayed up change
// nothing. A shutdown in the middle of an outage still drains cleanly.
func TestHealthFollowsTheRegistry(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	db := newOutageDatabase(t)
	cfg := remoteConfig(t, up, t.TempDir())
	cfg.DatabaseURL = db.url
	srv := startReady(t, cfg, log, Options{ReadinessInterval: testProbeInterval})
	admin := adminAddress(t, logs.String())
	// One Watch spans every outage below, several probe cycles each: on a
	// loaded machine that is longer than one call's testDeadline. The
	// deadline only guards against a hang.
	ctx, cancel := context.WithTimeout(t.Context(), 5*testDeadline)
	defer cancel()

	watch, err := srv.health.Watch(ctx, &healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	nextWatch := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		if got, err := watch.Recv(); err != nil || got.GetStatus() != want {
			t.Fatalf("next Watch status = %v, %v; want %s", got, err, want)
		}
	}
	nextWatch(healthpb.HealthCheckResponse_SERVING)
	wantHealth(t, srv, admin, healthpb.HealthCheckResponse_SERVING)

	const cycles = 2
	before := scrapeMetrics(t, admin)

	// Dead pooled connections alone are no outage: the probes that meet
	// them pass on fresh ones (the counts below stay at one per outage).
	db.dropConnections(t)
	waitPings(t, admin, 3)
	wantHealth(t, srv, admin, healthpb.HealthCheckResponse_SERVING)

	for range cycles {
		db.down(t)
		nextWatch(healthpb.HealthCheckResponse_NOT_SERVING)
		wantHealth(t, srv, admin, healthpb.HealthCheckResponse_NOT_SERVING)
		// /readyz says why: the registry check, with PostgreSQL's own
		// refusal, and never the database URL's password.
		if _, body := getReadyz(t, admin); !strings.HasPrefix(body, "not ready: health is NOT_SERVING: registry check failed: registry: ping: ") ||
			!strings.Contains(body, "is not currently accepting connections") || strings.Contains(body, outagePassword) {
			t.Errorf("/readyz during an outage = %q; want the registry check's reason, with no password", body)
		}
		// More probes fail while it stays down: the counts below show they
		// are not each logged and counted.
		waitPings(t, admin, 3)

		db.up(t)
		nextWatch(healthpb.HealthCheckResponse_SERVING)
		wantHealth(t, srv, admin, healthpb.HealthCheckResponse_SERVING)
		waitPings(t, admin, 3)
	}
	after := scrapeMetrics(t, admin)

	for _, to := range []string{transitionToNotServing, transitionToServing} {
		labels := map[string]string{"to": to}
		if got := after.value("recovery_readiness_transitions_total", labels) - before.value("recovery_readiness_transitions_total", labels); got != cycles {
			t.Errorf("recovery_readiness_transitions_total%v grew by %v over %d outages, want %d", labels, got, cycles, cycles)
		}
	}
	lost := logLines(t, logs.String(), "readiness lost: health NOT_SERVING until the check passes again")
	if len(lost) != cycles {
		t.Errorf("%d \"readiness lost\" lines over %d outages, want one each", len(lost), cycles)
	}
	for _, l := range lost {
		// The error is PostgreSQL's own refusal: the outage was real, and
		// the dead connections it left were not what got reported.
		if l["level"] != "WARN" || l["check"] != "registry" || !strings.Contains(fmt.Sprint(l["error"]), "registry: ping") ||
			!strings.Contains(fmt.Sprint(l["error"]), "is not currently accepting connections") {
			t.Errorf("readiness lost line = %v; want WARN, check registry, PostgreSQL refusing the connection", l)
		}
	}
	regained := logLines(t, logs.String(), "readiness regained: health SERVING")
	if len(regained) != cycles {
		t.Errorf("%d \"readiness regained\" lines over %d recoveries, want one each", len(regained), cycles)
	}
	for _, l := range regained {
		if l["level"] != "INFO" {
			t.Errorf("readiness regained line = %v; want INFO", l)
		}
	}

	// Down once more, then shut down: the probe loop stops, the watcher
	// is told the server is going, and run returns cleanly.
	db.down(t)
	nextWatch(healthpb.HealthCheckResponse_NOT_SERVING)
	if err := srv.stop(); err != nil {
		t.Fatalf("run returned %v after a shutdown during an outage", err)
	}
	if _, err := watch.Recv(); status.Code(err) != codes.Unavailable {
		t.Errorf("Watch after shutdown = %v, want Unavailable", err)
	}
	if n := len(logLines(t, logs.String(), "readiness regained: health SERVING")); n != cycles {
		t.Errorf("%d \"readiness regained\" lines after a shutdown during an outage, want still %d", n, cycles)
	}
}

// TestReadyzSaysWhy: while a start-up check fails, /readyz answers 503 with
// the check that failed and its cause, not only the health status.
func TestReadyzSaysWhy(t *testing.T) {
	log, logs := newTestLogger(t)
	unpublished := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == sandbox.PathJWKS {
				http.Error(w, "JWKS not published yet", http.StatusServiceUnavailable)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
	up := startUpstream(t, t.TempDir(), log, unpublished)
	startServer(t, remoteConfig(t, up, t.TempDir()), log, Options{})
	deadline := time.Now().Add(testDeadline)
	for !strings.Contains(logs.String(), `"msg":"not ready yet"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no failed start-up check logged within %s", testDeadline)
		}
		time.Sleep(10 * time.Millisecond)
	}
	code, body := getReadyz(t, adminAddress(t, logs.String()))
	const want = "not ready: health is NOT_SERVING: verification keys check failed: "
	if code != http.StatusServiceUnavailable || !strings.HasPrefix(body, want) || !strings.Contains(body, "503") {
		t.Errorf("/readyz with the JWKS unavailable = %d %q; want 503 %q… naming the upstream's 503", code, body, want)
	}
	if strings.Contains(body, sandbox.DevPartnerToken) {
		t.Errorf("/readyz shows the upstream token: %q", body)
	}
}

// wantHealth fails unless Check, overall and for the RecoveryService, and
// the admin /readyz all agree on want.
func wantHealth(t *testing.T, srv *testServer, admin string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	for _, name := range []string{"", serviceName} {
		resp, err := srv.health.Check(testCtx(t), &healthpb.HealthCheckRequest{Service: name})
		if err != nil || resp.GetStatus() != want {
			t.Errorf("Check(%q) = %v, %v; want %s", name, resp, err, want)
		}
	}
	code, body := getReadyz(t, admin)
	wantCode := http.StatusOK
	if want != healthpb.HealthCheckResponse_SERVING {
		wantCode = http.StatusServiceUnavailable
	}
	if code != wantCode {
		t.Errorf("/readyz = %d %q while health is %s; want %d", code, body, want, wantCode)
	}
}

// getReadyz GETs /readyz from the admin server at addr.
func getReadyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	code, body := adminGet(t, addr, "/readyz")
	return code, strings.TrimSpace(body)
}

// adminGet GETs path from the admin server at addr: its status and body.
func adminGet(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(testCtx(t), http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// waitPings waits until the registry has been pinged n more times (its
// operation metric counts every Ping, failed or not), polling /metrics.
func waitPings(t *testing.T, admin string, n float64) {
	t.Helper()
	ping := map[string]string{"operation": "Ping"}
	const family = "recovery_registry_operation_duration_seconds"
	from := scrapeMetrics(t, admin).value(family, ping)
	deadline := time.Now().Add(testDeadline)
	for scrapeMetrics(t, admin).value(family, ping) < from+n {
		if time.Now().After(deadline) {
			t.Fatalf("the registry was not pinged %v more times within %s", n, testDeadline)
		}
		time.Sleep(testProbeInterval)
	}
}

// logLines returns the JSON log records whose msg is msg.
func logLines(t *testing.T, logs, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// TestSafeReasonRedacts: a password an error quotes, in a URL or a
// key=value connection string, never reaches /readyz; a huge error is cut.
func TestSafeReasonRedacts(t *testing.T) {
	cases := map[string]struct{ err, want string }{
		"url": {`dial postgres://app:s3cret@db:5432/x: refused`,
			`registry check failed: dial postgres://app:[redacted]@db:5432/x: refused`},
		"key=value": {`connect host=db user=app password=s3cret dbname=x: refused`,
			`registry check failed: connect host=db user=app password=[redacted] dbname=x: refused`},
		"quoted key=value": {`connect password='s3 cret' host=db`,
			`registry check failed: connect password=[redacted] host=db`},
		"nothing to hide": {`ping: connection refused`, `registry check failed: ping: connection refused`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			if got := safeReason("registry", errors.New(c.err)); got != c.want {
				t.Errorf("safeReason(%q) = %q, want %q", c.err, got, c.want)
			}
		})
	}
	long := safeReason("registry", errors.New(strings.Repeat("é", maxReasonBytes)))
	if len(long) > maxReasonBytes+len("…") || !utf8.ValidString(long) || !strings.HasSuffix(long, "…") {
		t.Errorf("a long reason is %d bytes (valid UTF-8: %v); want at most %d and an ellipsis", len(long), utf8.ValidString(long), maxReasonBytes)
	}
}
