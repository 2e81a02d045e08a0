package sandbox

import (
	"bytes"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Fault kinds (Config.Faults): what a WAN upstream does to a partner request
// now and then. The first four leave the emulator's state unchanged; the
// last three process the request (a key is assigned, a backup stored) and
// then lose or delay the answer.
const (
	// Fault500 answers 500 internal_error without processing.
	Fault500 = "500"
	// Fault503 answers 503 unavailable without processing.
	Fault503 = "503"
	// Fault429 answers 429 rate_limited with Retry-After: 1 without
	// processing.
	Fault429 = "429"
	// FaultResetBefore closes the connection before processing: no answer.
	FaultResetBefore = "reset-before"
	// FaultResetAfter processes the request, then closes the connection
	// with no answer: the client cannot know it succeeded.
	FaultResetAfter = "reset-after"
	// FaultSlow delays the answer by Config.FaultDelay, then processes.
	FaultSlow = "slow"
	// FaultTruncated processes the request, then sends half of the JSON
	// body (with the whole body's Content-Length) and closes.
	FaultTruncated = "truncated"
)

// DefaultFaultDelay is FaultSlow's delay when Config.FaultDelay is zero.
const DefaultFaultDelay = 2 * time.Second

// errTypeUnavailable is the error type of an injected 503.
const errTypeUnavailable = "service_unavailable"

// faultKinds lists the kinds in the order a draw walks them, so a seed
// gives the same sequence on every run.
var faultKinds = []string{Fault500, Fault503, Fault429, FaultResetBefore, FaultResetAfter, FaultSlow, FaultTruncated}

// ParseFaults reads sandboxd's --faults value: comma-separated KIND=P pairs,
// P a probability in [0, 1], for example "503=0.1,reset-after=0.05". The
// probabilities add up to at most 1; "" means no faults.
func ParseFaults(spec string) (map[string]float64, error) {
	faults := map[string]float64{}
	if strings.TrimSpace(spec) == "" {
		return faults, nil
	}
	for pair := range strings.SplitSeq(spec, ",") {
		kind, p, ok := strings.Cut(strings.TrimSpace(pair), "=")
		if !ok {
			return nil, fmt.Errorf("fault %q: want KIND=PROBABILITY", pair)
		}
		prob, err := strconv.ParseFloat(p, 64)
		if err != nil {
			return nil, fmt.Errorf("fault %s: probability %q is not a number", kind, p)
		}
		if _, dup := faults[kind]; dup {
			return nil, fmt.Errorf("fault %s is given twice", kind)
		}
		faults[kind] = prob
	}
	return faults, checkFaults(faults)
}

// checkFaults reports an unknown kind, a probability outside [0, 1] or a
// total above 1.
func checkFaults(faults map[string]float64) error {
	total := 0.0
	for _, kind := range slices.Sorted(maps.Keys(faults)) {
		p := faults[kind]
		if !slices.Contains(faultKinds, kind) {
			return fmt.Errorf("unknown fault kind %q (want one of %s)", kind, strings.Join(faultKinds, ", "))
		}
		if p < 0 || p > 1 {
			return fmt.Errorf("fault %s: probability %v is outside [0, 1]", kind, p)
		}
		total += p
	}
	if total > 1 {
		return fmt.Errorf("fault probabilities add up to %v, more than 1", total)
	}
	return nil
}

// faultInjector draws a fault (or none) for each partner request and counts
// what it injected.
type faultInjector struct {
	probs   map[string]float64
	delay   time.Duration
	latency time.Duration
	paths   []string // empty: every partner path

	mu       sync.Mutex
	rnd      *rand.Rand
	injected map[string]int64
	requests int64
}

func newFaultInjector(c Config) *faultInjector {
	seed := uint64(c.FaultSeed) //nolint:gosec // a seed, any bits will do.
	if c.FaultSeed == 0 {
		seed = rand.Uint64() //nolint:gosec // a seed for fault draws, not a secret.
	}
	return &faultInjector{
		probs:    c.Faults,
		delay:    c.FaultDelay,
		latency:  c.Latency,
		paths:    slices.Clone(c.FaultPaths),
		rnd:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), //nolint:gosec // fault draws, not secrets.
		injected: map[string]int64{},
	}
}

// draw picks this request's fault: "" for none.
func (f *faultInjector) draw() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if len(f.probs) == 0 {
		return ""
	}
	x := f.rnd.Float64()
	for _, kind := range faultKinds {
		p := f.probs[kind]
		if x < p {
			f.injected[kind]++
			return kind
		}
		x -= p
	}
	return ""
}

// FaultCounts is the body of GET /sandbox/v1/faults: how many partner
// requests arrived (with Config.FaultPaths: to those paths) and how many of
// them each fault kind hit.
type FaultCounts struct {
	Requests int64            `json:"requests"`
	Injected map[string]int64 `json:"injected"`
}

func (f *faultInjector) counts() FaultCounts {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FaultCounts{Requests: f.requests, Injected: maps.Clone(f.injected)}
}

// sleep waits d, or less when the client has gone.
func sleep(r *http.Request, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-r.Context().Done():
	}
}

// withFaults serves a partner request through next with the configured
// latency and, when one is drawn, a fault.
func (s *Server) withFaults(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sleep(r, s.faults.latency)
		if len(s.faults.paths) > 0 && !slices.Contains(s.faults.paths, r.URL.Path) {
			next(w, r)
			return
		}
		kind := s.faults.draw()
		if kind != "" {
			logAttrs(r, "fault", kind)
		}
		switch kind {
		case "":
			next(w, r)
		case Fault500:
			writeError(w, errInternal())
		case Fault503:
			writeError(w, &apiError{Status: http.StatusServiceUnavailable, Type: errTypeUnavailable, Message: "The service is temporarily unavailable."})
		case Fault429:
			writeError(w, &apiError{Status: http.StatusTooManyRequests, Type: errTypeRateLimited, Message: "Too many requests.", RetryAfter: 1})
		case FaultResetBefore:
			closeConnection(w)
		case FaultSlow:
			sleep(r, s.faults.delay)
			next(w, r)
		case FaultResetAfter, FaultTruncated:
			// NOTE: the request is processed in full (its state change is
			// the point); only its answer is lost.
			held := &heldResponse{header: http.Header{}}
			next(held, r)
			if kind == FaultTruncated {
				held.sendHalf(w)
			}
			closeConnection(w)
		}
	}
}

// closeConnection drops the client's connection without (more of) an
// answer. HTTP/1 connections are hijacked and closed; where that is not
// possible the handler aborts, which net/http turns into a reset stream.
//
// NOTE: it flushes nothing: a flush before anything was written would send
// a "200 OK" status line, turning a reset into an answer with a cut body.
// sendHalf flushes what it wrote itself.
func closeConnection(w http.ResponseWriter) {
	if rc := http.NewResponseController(w); rc != nil {
		if conn, _, err := rc.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

// heldResponse keeps an answer instead of sending it.
type heldResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (h *heldResponse) Header() http.Header { return h.header }

func (h *heldResponse) WriteHeader(status int) {
	if h.status == 0 {
		h.status = status
	}
}

func (h *heldResponse) Write(p []byte) (int, error) {
	h.WriteHeader(http.StatusOK)
	return h.body.Write(p)
}

// sendHalf sends the held status and headers, the whole body's
// Content-Length, and only the first half of the body.
func (h *heldResponse) sendHalf(w http.ResponseWriter) {
	maps.Copy(w.Header(), h.header)
	w.Header().Set("Content-Length", strconv.Itoa(h.body.Len()))
	w.WriteHeader(h.status)
	_, _ = w.Write(h.body.Bytes()[:h.body.Len()/2])
	_ = http.NewResponseController(w).Flush()
}

// handleFaults answers GET /sandbox/v1/faults.
func (s *Server) handleFaults(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.faults.counts())
}
