package sandbox

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// rateLimiter is a token bucket per API token, standing in for the
// sandbox's (unpublished) lower rate limits so clients can rehearse 429.
type rateLimiter struct {
	rate  float64 // tokens per second; 0 = off
	burst float64

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(rate float64, burst int) *rateLimiter {
	if burst <= 0 {
		burst = max(1, int(math.Ceil(rate)))
	}
	return &rateLimiter{rate: rate, burst: float64(burst), buckets: map[string]*bucket{}}
}

// allow takes one request from id's bucket at now; when it is empty the
// answer is a 429 whose Retry-After is the whole seconds until a request
// is allowed again.
func (l *rateLimiter) allow(id string, now time.Time) *apiError {
	if l.rate <= 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[id]
	if !ok {
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[id] = b
	}
	if elapsed := now.Sub(b.last).Seconds(); elapsed > 0 {
		b.tokens = math.Min(l.burst, b.tokens+elapsed*l.rate)
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return nil
	}
	wait := int(math.Ceil((1 - b.tokens) / l.rate))
	wait = max(wait, 1)
	return &apiError{Status: http.StatusTooManyRequests, Type: errTypeRateLimited,
		Message: "Rate limit exceeded: retry after " + strconv.Itoa(wait) + "s", RetryAfter: wait}
}
