package app

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// countingPool is a mem.BufferPool that counts the buffers it has out.
type countingPool struct {
	mem.BufferPool
	mu  sync.Mutex
	out map[*[]byte]bool
}

func (p *countingPool) Get(n int) *[]byte {
	h := p.BufferPool.Get(n)
	p.mu.Lock()
	p.out[h] = true
	p.mu.Unlock()
	return h
}

func (p *countingPool) Put(h *[]byte) {
	p.mu.Lock()
	if !p.out[h] {
		panic("a buffer the pool did not lend, or lent once and returned twice")
	}
	delete(p.out, h)
	p.mu.Unlock()
	p.BufferPool.Put(h)
}

func (p *countingPool) lent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.out)
}

// wireStream is a grpc.ServerStream whose RecvMsg decodes the next of its
// messages with codec, as grpc-go does, from a fresh receive buffer.
type wireStream struct {
	grpc.ServerStream
	codec requestCodec
	wire  [][]byte
}

func (s *wireStream) RecvMsg(m any) error {
	if len(s.wire) == 0 {
		return io.EOF
	}
	data := mem.BufferSlice{mem.SliceBuffer(append([]byte(nil), s.wire[0]...))}
	s.wire = s.wire[1:]
	return s.codec.Unmarshal(data, m)
}

// TestChunkBuffersLentOnlyWhileTheHandlerHoldsTheChunk: a SecureFile
// chunk's buffer is lent by the pool while the handler holds the chunk and
// back in it as soon as the handler asks for the next message or returns;
// at most one is out per stream, a header takes none, and a message decoded
// without a chunkStream (nobody to return the buffer) is not lent one.
func TestChunkBuffersLentOnlyWhileTheHandlerHoldsTheChunk(t *testing.T) {
	tiered, err := mem.NewBinaryTieredBufferPool(chunkBufferExponents...)
	if err != nil {
		t.Fatal(err)
	}
	pool := &countingPool{BufferPool: tiered, out: map[*[]byte]bool{}}
	chunks := &chunkBuffers{pool: pool, loans: map[*recoveryv1.SecureFileRequest]*[]byte{}}
	codec := newRequestCodec(chunks)
	marshal := func(m *recoveryv1.SecureFileRequest) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	chunk := func(fill byte, n int) []byte { return bytes.Repeat([]byte{fill}, n) }
	chunkMsg := func(c []byte) []byte {
		return marshal(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: c}})
	}
	header := marshal(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Header{
		Header: &recoveryv1.SecureFileHeader{Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: "k"}}}})
	a, b, c := chunk(0xaa, 1<<20), chunk(0xbb, 16<<10), chunk(0xcc, 100<<10)

	stream := &wireStream{codec: codec, wire: [][]byte{header, chunkMsg(a), chunkMsg(b), header, chunkMsg(c)}}
	handler := func(_ any, ss grpc.ServerStream) error {
		for i, want := range []struct {
			chunk []byte
			lent  int
		}{{nil, 0}, {a, 1}, {b, 1}, {nil, 0}, {c, 1}} {
			msg := &recoveryv1.SecureFileRequest{}
			if err := ss.RecvMsg(msg); err != nil {
				return err
			}
			if !bytes.Equal(msg.GetChunk(), want.chunk) {
				t.Errorf("message %d: chunk of %d bytes, want the %d sent", i, len(msg.GetChunk()), len(want.chunk))
			}
			if got := cap(msg.GetChunk()); got != len(want.chunk) {
				t.Errorf("message %d: chunk capacity %d, want its length %d", i, got, len(want.chunk))
			}
			if got := pool.lent(); got != want.lent {
				t.Errorf("message %d: %d buffers lent, want %d", i, got, want.lent)
			}
		}
		return ss.RecvMsg(&recoveryv1.SecureFileRequest{})
	}
	err = chunks.streamInterceptor(nil, stream, &grpc.StreamServerInfo{}, handler)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("handler returned %v, want EOF", err)
	}
	if got := pool.lent(); got != 0 {
		t.Errorf("%d buffers still lent after the handler returned", got)
	}
	if len(chunks.loans) != 0 {
		t.Errorf("%d messages still registered", len(chunks.loans))
	}

	// The handler returns holding a chunk (a failure mid-file).
	stream = &wireStream{codec: codec, wire: [][]byte{chunkMsg(a)}}
	_ = chunks.streamInterceptor(nil, stream, &grpc.StreamServerInfo{}, func(_ any, ss grpc.ServerStream) error {
		if err := ss.RecvMsg(&recoveryv1.SecureFileRequest{}); err != nil {
			return err
		}
		if got := pool.lent(); got != 1 {
			t.Errorf("%d buffers lent while the handler holds a chunk, want 1", got)
		}
		return errors.New("the file is too large")
	})
	if got := pool.lent(); got != 0 {
		t.Errorf("%d buffers still lent after the handler failed", got)
	}

	// Decoded without a chunkStream: an ordinary allocation.
	msg := &recoveryv1.SecureFileRequest{}
	if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(chunkMsg(b))}, msg); err != nil || !bytes.Equal(msg.GetChunk(), b) {
		t.Fatalf("decoding without a chunkStream: %v", err)
	}
	if got := pool.lent(); got != 0 {
		t.Errorf("a message decoded without a chunkStream was lent a buffer")
	}
}
