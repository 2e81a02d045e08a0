package app

import (
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// chunkBufferExponents are the sizes, powers of two from 16 KiB (the
// smallest chunk SecureFile accepts but the last) to 1 MiB (the largest),
// of the buffers chunkBuffers lends: a chunk gets the smallest that fits.
var chunkBufferExponents = []uint8{14, 15, 16, 17, 18, 19, 20}

// chunkBuffers lends SecureFile chunks their memory from a pool, so that an
// upload's chunks reuse a few buffers instead of allocating one per chunk.
//
// Allocated afresh, every 1 MiB chunk became garbage once forwarded, and
// the heap grew to about twice what was live before each collection: 16
// concurrent uploads peaked at over 100 MiB. Lent, a chunk's buffer goes
// back to the pool as soon as the handler is done with it, and the next
// chunk, of this upload or another, takes it.
//
// A buffer is lent only to a message that chunkStream is receiving, so
// that every loan has an owner who returns it: chunkStream registers the
// message before its RecvMsg (want), the codec borrows a buffer for it
// while decoding (borrow), and chunkStream takes it after (take) and
// returns it to the pool when the handler asks for the next message or
// returns. That rests on one property of service.Server.SecureFile, which
// its tests and docs state: it never keeps a chunk after asking for the
// next message. A message decoded elsewhere (no chunkStream: a test's own
// server, another service) gets an ordinary allocation.
//
// The pool clears a buffer before lending it again, and a chunk is sliced
// to its length and capacity, so no chunk can reach another's bytes. The
// bytes are ciphertext (SecureFile's caller encrypted them).
type chunkBuffers struct {
	pool mem.BufferPool

	mu sync.Mutex
	// loans holds the messages being received by a chunkStream: nil until
	// the codec lends the message a buffer.
	loans map[*recoveryv1.SecureFileRequest]*[]byte
}

func newChunkBuffers() *chunkBuffers {
	pool, err := mem.NewBinaryTieredBufferPool(chunkBufferExponents...)
	if err != nil {
		panic("chunk buffer sizes: " + err.Error()) // fixed above: cannot happen
	}
	return &chunkBuffers{pool: pool, loans: make(map[*recoveryv1.SecureFileRequest]*[]byte)}
}

// want registers msg, about to be received by a chunkStream.
func (c *chunkBuffers) want(msg *recoveryv1.SecureFileRequest) {
	c.mu.Lock()
	c.loans[msg] = nil
	c.mu.Unlock()
}

// borrow returns a buffer of n bytes for decoding msg: lent from the pool
// when a chunkStream registered msg, else allocated; ok reports a loan,
// which giveBack undoes when the buffer is not used after all.
func (c *chunkBuffers) borrow(msg *recoveryv1.SecureFileRequest, n int) (buf []byte, lent bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if held, wanted := c.loans[msg]; !wanted || held != nil {
		return make([]byte, n), false
	}
	h := c.pool.Get(n)
	c.loans[msg] = h
	return *h, true
}

// giveBack returns msg's loan to the pool before the message took it (its
// bytes did not decode as a chunk).
func (c *chunkBuffers) giveBack(msg *recoveryv1.SecureFileRequest) {
	c.mu.Lock()
	h := c.loans[msg]
	if h != nil {
		c.loans[msg] = nil
	}
	c.mu.Unlock()
	if h != nil {
		c.pool.Put(h)
	}
}

// take ends msg's registration and returns its loan, nil if none.
func (c *chunkBuffers) take(msg *recoveryv1.SecureFileRequest) *[]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	h := c.loans[msg]
	delete(c.loans, msg)
	return h
}

// streamInterceptor wraps each stream in a chunkStream. It is installed
// innermost, after the chain (newGRPCServer), so that it sees the handler's
// own RecvMsg calls and the handler's return.
func (c *chunkBuffers) streamInterceptor(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	cs := &chunkStream{ServerStream: ss, buffers: c}
	defer cs.end()
	return h(srv, cs)
}

// chunkStream holds the buffer lent to the last SecureFile message its
// handler received, and returns it when the handler asks for the next one
// or returns.
type chunkStream struct {
	grpc.ServerStream
	buffers *chunkBuffers

	mu    sync.Mutex
	held  *[]byte
	ended bool
}

// RecvMsg receives the next message; a SecureFileRequest's chunk may be
// lent its buffer.
func (s *chunkStream) RecvMsg(m any) error {
	msg, ok := m.(*recoveryv1.SecureFileRequest)
	if !ok {
		return s.ServerStream.RecvMsg(m)
	}
	// NOTE: the handler asks for a message only once it is done with the
	// previous one, so its buffer can go back first.
	s.hold(nil)
	s.buffers.want(msg)
	err := s.ServerStream.RecvMsg(m)
	s.hold(s.buffers.take(msg))
	return err
}

// hold returns the buffer held so far and holds h instead; once the
// handler has returned, h goes straight back.
func (s *chunkStream) hold(h *[]byte) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		s.put(h)
		return
	}
	prev := s.held
	s.held = h
	s.mu.Unlock()
	s.put(prev)
}

// end returns the buffer held when the handler returns. A RecvMsg still
// running then (SecureFile receives on a goroutine of its own) returns its
// buffer itself.
func (s *chunkStream) end() {
	s.mu.Lock()
	s.ended = true
	h := s.held
	s.held = nil
	s.mu.Unlock()
	s.put(h)
}

func (s *chunkStream) put(h *[]byte) {
	if h != nil {
		s.buffers.pool.Put(h)
	}
}
