package app

import (
	"cmp"
	"context"
	"log/slog"
	"regexp"
	"strings"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/walletprovider/recoveryservice/service/registry"
)

// Start-up readiness pacing: quick at first (the embedded sandbox is up
// within milliseconds), then no more than one round of checks every few
// seconds against an upstream that is down.
const (
	readinessFirstRetry = 100 * time.Millisecond
	readinessMaxRetry   = 5 * time.Second
	// readinessCheckTimeout bounds one start-up check (a JWKS fetch, a
	// database ping).
	readinessCheckTimeout = 10 * time.Second
)

// Re-probing once SERVING: a balancer polls health every few seconds, so a
// registry outage shows within one balancer interval or two.
const (
	// readinessProbeInterval is how often a re-probe starts (a probe that
	// runs longer skips the ticks it missed rather than queueing them).
	readinessProbeInterval = 5 * time.Second
	// readinessProbeTimeout bounds one re-probe. A ping waits for a free
	// pooled connection (SQLite has a single writer), so it is generous
	// enough to ride out a busy moment, yet under the interval: a registry
	// that takes longer to answer a ping is as good as down for callers.
	readinessProbeTimeout = 3 * time.Second
)

// registryStaleConnRetries bounds the extra pings of one registry check:
// more than the connections the registry keeps idle (16 for PostgreSQL by
// default), each of which a database restart may have left dead.
const registryStaleConnRetries = 32

// readinessMeterName scopes recoveryd's own instruments.
const readinessMeterName = "github.com/walletprovider/recoveryservice/cmd/recoveryd"

// Values of the transitions counter's "to" attribute.
const (
	transitionToServing    = "serving"
	transitionToNotServing = "not_serving"
)

// readinessCheck is one dependency that must answer for recoveryd to
// report SERVING.
type readinessCheck struct {
	name  string
	check func(ctx context.Context) error
}

// readiness decides health: NOT_SERVING until every start-up check passes
// in one round, then SERVING for as long as the re-probed checks keep
// passing, and SERVING again once they pass after a failure.
type readiness struct {
	log    *slog.Logger
	health *healthService
	// startup must all pass, in one round, before the first SERVING.
	startup []readinessCheck
	// reprobe runs every interval after that. It leaves out the upstream
	// on purpose: the Partner Key Service has no cheap health endpoint and
	// rate-limits partners, and the verification keys, once fetched, are
	// cached, so an upstream outage fails the calls that need it (with
	// Unavailable) rather than the whole replica; another replica would
	// not fare better.
	reprobe  []readinessCheck
	interval time.Duration
	// transitions counts health changes the checks make, by "to".
	transitions metric.Int64Counter
}

// newReadiness wires the checks to hs. An interval of zero means
// readinessProbeInterval (tests pass a short one through Options).
func newReadiness(log *slog.Logger, hs *healthService, startup, reprobe []readinessCheck, interval time.Duration) *readiness {
	transitions, err := otel.Meter(readinessMeterName).Int64Counter(
		"recovery.readiness.transitions",
		metric.WithDescription("Health changes made by the readiness checks, by the status changed to: serving (ready at start-up, or recovered) or not_serving (a re-probe failed)."),
		metric.WithUnit("{transition}"),
	)
	if err != nil {
		// The API returns a working no-op instrument with the error; the
		// error only reports an invalid name, fixed above.
		otel.Handle(err)
	}
	return &readiness{
		log:         log,
		health:      hs,
		startup:     startup,
		reprobe:     reprobe,
		interval:    cmp.Or(interval, readinessProbeInterval),
		transitions: transitions,
	}
}

// run waits until the start-up checks pass, then re-probes until ctx ends
// (shutdown). It changes health only while it runs: the caller waits for it
// to return before draining health.
func (r *readiness) run(ctx context.Context) {
	if !r.awaitReady(ctx) {
		return
	}
	r.watch(ctx)
}

// awaitReady runs the start-up checks until all pass in one round, then
// marks the server SERVING and reports true. It gives up silently, with
// false, when ctx ends (shutdown).
func (r *readiness) awaitReady(ctx context.Context) bool {
	delay := readinessFirstRetry
	for attempt := 1; ; attempt++ {
		name, err := runChecks(ctx, r.startup, readinessCheckTimeout)
		if ctx.Err() != nil {
			return false
		}
		if err == nil {
			r.health.markServing()
			r.transitions.Add(ctx, 1, metric.WithAttributes(attribute.String("to", transitionToServing)))
			r.log.Info("ready: health SERVING", "attempts", attempt)
			return true
		}
		r.health.setNotReady(safeReason(name, err))
		r.log.Warn("not ready yet", "check", name, "attempt", attempt, "retry_in", delay.String(), "error", err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, readinessMaxRetry)
	}
}

// watch re-probes every interval until ctx ends, turning health
// NOT_SERVING when a probe fails and SERVING when one passes again. It logs
// and counts transitions only, not every probe: an outage of an hour is one
// WARN line, not seven hundred.
func (r *readiness) watch(ctx context.Context) {
	ticker := time.NewTicker(r.interval)
	defer ticker.Stop()
	serving := true
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		name, err := runChecks(ctx, r.reprobe, readinessProbeTimeout)
		if ctx.Err() != nil {
			// Shutdown cancelled the probe: its failure says nothing.
			return
		}
		if err != nil {
			// Every failing probe refreshes the reason, so /readyz tells
			// the current cause of an outage, not the first.
			r.health.setNotReady(safeReason(name, err))
		}
		switch {
		case err != nil && serving:
			serving = false
			r.health.markNotServing()
			r.transitions.Add(ctx, 1, metric.WithAttributes(attribute.String("to", transitionToNotServing)))
			r.log.Warn("readiness lost: health NOT_SERVING until the check passes again", "check", name, "probe_interval", r.interval.String(), "error", err)
		case err == nil && !serving:
			serving = true
			r.health.markServing()
			r.transitions.Add(ctx, 1, metric.WithAttributes(attribute.String("to", transitionToServing)))
			r.log.Info("readiness regained: health SERVING")
		}
	}
}

// runChecks runs checks in order, each bounded by timeout, and returns the
// name and error of the first that fails.
func runChecks(ctx context.Context, checks []readinessCheck, timeout time.Duration) (string, error) {
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, timeout)
		err := c.check(cctx)
		cancel()
		if err != nil {
			return c.name, err
		}
	}
	return "", nil
}

// registryCheck pings the registry the way database/sql runs a query. A
// pooled connection the server closed while it sat idle (a restart that is
// over, an idle timeout, a proxy) fails with driver.ErrBadConn, or with
// PostgreSQL's admin_shutdown, and leaves the pool; database/sql would
// retry a query on another connection, but not a ping. So the check tries
// again while that is the error (registry.StaleConnection): a database that
// is back passes on a fresh connection, one that is still down refuses it
// and the check fails with the database's own reason.
//
// A registry that answers but cannot write (a full disk, a read-only file
// system, a held lock) is not ready either: every store writes its record
// before it is acknowledged. So the check then commits a write (probeWrite).
func registryCheck(ping, probeWrite func(context.Context) error) readinessCheck {
	check := func(ctx context.Context) error {
		if err := ping(ctx); err != nil {
			return err
		}
		return probeWrite(ctx)
	}
	return readinessCheck{name: "registry", check: func(ctx context.Context) error {
		err := check(ctx)
		for range registryStaleConnRetries {
			if !registry.StaleConnection(err) || ctx.Err() != nil {
				break
			}
			err = check(ctx)
		}
		return err
	}}
}

// maxReasonBytes bounds the reason /readyz prints: enough for a driver's
// error and its cause, not for a whole response body echoed into one.
const maxReasonBytes = 512

// Secrets an error may quote: a URL's password (postgres://user:pw@host)
// and a key=value connection string's password=.
var (
	urlPassword      = regexp.MustCompile(`(://[^:/@\s]*):[^@\s]*@`)
	keyValuePassword = regexp.MustCompile(`(?i)(password\s*=\s*)('[^']*'|\S+)`)
)

// safeReason is why check name failed, as /readyz tells it to anyone who
// can reach the admin port: the check and its error, with any password the
// error quotes redacted, cut to maxReasonBytes.
//
// NOTE: the errors are our own and the drivers' (registry pings, JWKS
// fetches); neither quotes a token or plaintext, and net/http already strips
// a URL's password, so the redaction is a second guard, not the first.
func safeReason(name string, err error) string {
	reason := name + " check failed: " + err.Error()
	reason = urlPassword.ReplaceAllString(reason, "$1:"+redacted+"@")
	reason = keyValuePassword.ReplaceAllString(reason, "${1}"+redacted)
	if len(reason) > maxReasonBytes {
		reason = strings.ToValidUTF8(reason[:maxReasonBytes], "") + "…"
	}
	return reason
}
