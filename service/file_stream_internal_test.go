package service

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// countingStream is a fileStream whose every Recv is counted; each returns a
// chunk at once.
type countingStream struct {
	calls atomic.Int32
	// early is set when a Recv started before the handler asked for it.
	early  atomic.Bool
	asking atomic.Int32 // how many messages the handler has asked for
}

func (c *countingStream) Recv() (*recoveryv1.SecureFileRequest, error) {
	if n := c.calls.Add(1); n > c.asking.Load() {
		c.early.Store(true)
	}
	return &recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: make([]byte, 1<<20)}}, nil
}

// TestIdleStreamReadsNoMessageAhead: the stream is read only when the
// handler asks for the next message, so one upload holds one decoded chunk
// at a time, not a second one read ahead while the first is forwarded.
func TestIdleStreamReadsNoMessageAhead(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	raw := &countingStream{}
	s := newIdleStream(ctx, raw, time.Minute)
	for i := range 5 {
		raw.asking.Add(1)
		if _, err := s.Recv(); err != nil {
			t.Fatalf("Recv %d: %v", i, err)
		}
		// The handler forwarding the chunk: a read ahead would happen now.
		time.Sleep(20 * time.Millisecond)
		if raw.early.Load() {
			t.Fatalf("after %d messages asked for, the stream was read %d times: a message was read ahead", i+1, raw.calls.Load())
		}
	}
}
