package service

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
	"github.com/walletprovider/recoveryservice/upstream"
)

// SecureFile stream limits.
const (
	// MinChunkBytes is the smallest chunk SecureFile accepts, except for a
	// stream's last chunk: tiny chunks cost a message, a hash update and an
	// upstream write each (a million 1-byte chunks took 11 s of CPU).
	MinChunkBytes = 16 << 10
	// DefaultStreamIdleTimeout is how long a SecureFile stream may wait
	// between two messages (before the header, header to first chunk,
	// chunk to chunk, last chunk to close) before it is aborted.
	DefaultStreamIdleTimeout = 30 * time.Second
)

// received is one Recv's outcome.
type received struct {
	msg *recoveryv1.SecureFileRequest
	err error
}

// idleStream bounds the wait for each message of a SecureFile stream. A
// blocked Recv cannot be interrupted, so one goroutine receives and hands
// each message over; the handler waits for it at most the idle timeout and
// then returns, which ends the stream and with it that goroutine's Recv.
// The goroutine receives only when the handler asks for the next message,
// so a stream holds one decoded chunk at a time (the one being forwarded),
// never a second one read ahead: with 1 MiB chunks that halved the memory
// of many concurrent uploads. gRPC's flow-control window still lets the
// caller send on meanwhile.
type idleStream struct {
	ctx     context.Context
	want    chan struct{}
	msgs    chan received
	timeout time.Duration
	// asked: a message was asked for and has not arrived (a Recv timed out).
	asked bool
}

// newIdleStream starts the receiving goroutine, which ends when stream
// fails or ctx (the stream's context, which ends when the handler returns)
// ends.
func newIdleStream(ctx context.Context, stream fileStream, timeout time.Duration) *idleStream {
	s := &idleStream{ctx: ctx, want: make(chan struct{}, 1), msgs: make(chan received), timeout: timeout}
	go func() {
		for {
			select {
			case <-s.want:
			case <-ctx.Done():
				return
			}
			msg, err := stream.Recv()
			select {
			case s.msgs <- received{msg, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return s
}

// Recv returns the next message, or a STREAM_IDLE_TIMEOUT failure when
// none arrived within the idle timeout, or the context's error when the
// call is cancelled first (the caller went away, or a shutdown cut it):
// the receiving goroutine stops handing messages over then, so waiting
// for one would hold the handler until the idle timeout.
func (s *idleStream) Recv() (*recoveryv1.SecureFileRequest, error) {
	if !s.asked {
		s.want <- struct{}{}
		s.asked = true
	}
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case r := <-s.msgs:
		s.asked = false
		return r.msg, r.err
	case <-s.ctx.Done():
		return nil, context.Cause(s.ctx)
	case <-t.C:
		f := fail(ReasonStreamIdleTimeout, fmt.Errorf("no message within %s", s.timeout))
		f.metadata = map[string]string{"idle_timeout": s.timeout.String()}
		return nil, f
	}
}

// chunkTooSmall is the failure of a chunk below MinChunkBytes that was not
// the stream's last.
func chunkTooSmall(n int) *failure {
	f := fail(ReasonChunkTooSmall, fmt.Errorf("a %d-byte chunk was followed by another", n))
	f.metadata = map[string]string{"min_chunk_bytes": strconv.Itoa(MinChunkBytes)}
	return f
}

// fileSink is where a SecureFile's chunks go: the upstream upload, started
// at the first chunk (a header followed by nothing opens no request), and,
// with a spool, the spool file it can be re-sent from.
type fileSink struct {
	s     *Server
	ctx   context.Context
	req   upstream.SecureFileRequest
	spool *spoolFile
	up    *upstream.FileUpload
}

// Write spools p, then forwards it. A spool that cannot be written fails
// the call: an upload that could not be re-sent is not started or kept.
func (k *fileSink) Write(p []byte) (int, error) {
	if k.up == nil {
		if k.s.spool != nil {
			sf, err := k.s.spool.create()
			if err != nil {
				return 0, spoolFailed(err)
			}
			k.spool = sf
			k.req.Replay = sf.reader
		}
		up, err := k.s.upstream.StartSecureFile(k.ctx, k.req)
		if err != nil {
			return 0, err
		}
		k.up = up
	}
	if k.spool != nil {
		if _, err := k.spool.Write(p); err != nil {
			return 0, spoolFailed(err)
		}
	}
	return k.up.Write(p)
}

// abort ends the upload mid-body, if it started: nothing is stored.
func (k *fileSink) abort(cause error) {
	if k.up != nil {
		k.up.Abort(cause)
	}
}

// finish completes the upload; the caller made sure it started.
func (k *fileSink) finish() (*upstream.SecureFileResponse, error) {
	return k.up.Finish()
}

// close removes the spool file, once the upload has ended.
func (k *fileSink) close() {
	if k.spool == nil {
		return
	}
	if err := k.spool.remove(); err != nil {
		k.s.log.LogAttrs(k.ctx, slog.LevelError, "removing a spool file failed", slog.String("error", err.Error()))
	}
}

// spoolFailed is the failure of a spool that cannot be written (a full
// disk): INTERNAL, with the cause in the log.
func spoolFailed(err error) *failure {
	return fail(ReasonInternal, fmt.Errorf("writing the upload spool (is the data dir's disk full?): %w", err))
}
