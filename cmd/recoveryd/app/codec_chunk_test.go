package app

import (
	"bytes"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// TestChunkDecodingMatchesProtobuf: whatever SecureFileRequest bytes
// arrive, split over receive buffers however, requestCodec decodes them as
// protobuf does; a chunk message's bytes are copied once, into a buffer
// that no longer aliases the receive buffers.
func TestChunkDecodingMatchesProtobuf(t *testing.T) {
	chunk := func(n int) []byte { return bytes.Repeat([]byte{0xc3}, n) }
	marshal := func(m *recoveryv1.SecureFileRequest) []byte {
		b, err := proto.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	oneChunk := func(n int) []byte {
		return marshal(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: chunk(n)}})
	}
	header := marshal(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Header{
		Header: &recoveryv1.SecureFileHeader{Key: &recoveryv1.SecureFileHeader_KeyId{KeyId: "k"}}}})
	unknownAfter := protowire.AppendVarint(protowire.AppendTag(oneChunk(10), 9, protowire.VarintType), 1)
	cases := map[string][]byte{
		"empty chunk":          oneChunk(0),
		"1-byte chunk":         oneChunk(1),
		"16 KiB chunk":         oneChunk(16 << 10),
		"1 MiB chunk":          oneChunk(1 << 20),
		"header":               header,
		"two chunk fields":     append(oneChunk(5), oneChunk(7)...),
		"chunk, unknown field": unknownAfter,
		"chunk, then header":   append(oneChunk(5), header...),
		"cut-off chunk":        oneChunk(100)[:50],
		"nothing":              {},
		"length past the end":  {0x12, 0x7f, 1, 2},
	}
	codec := newRequestCodec(nil)
	for name, wire := range cases {
		t.Run(name, func(t *testing.T) {
			want := &recoveryv1.SecureFileRequest{}
			wantErr := proto.Unmarshal(wire, want)
			for _, split := range []int{0, 1, 3, len(wire) / 2} {
				if split > len(wire) {
					continue
				}
				// The receive buffers: the wire bytes in two pieces.
				first := append([]byte(nil), wire[:split]...)
				second := append([]byte(nil), wire[split:]...)
				data := mem.BufferSlice{mem.SliceBuffer(first), mem.SliceBuffer(second)}
				got := &recoveryv1.SecureFileRequest{}
				err := codec.Unmarshal(data, got)
				if wantErr != nil {
					// requestCodec marks it instead of failing.
					if err != nil || undecodable(got) == nil {
						t.Fatalf("split %d: err = %v, marked = %v; want a marked message", split, err, undecodable(got) != nil)
					}
					continue
				}
				if err != nil || !proto.Equal(got, want) {
					t.Fatalf("split %d: got %v, %v; want %v", split, got, err, want)
				}
				if c := got.GetChunk(); len(c) > 0 {
					for i := range first {
						first[i] = 0
					}
					for i := range second {
						second[i] = 0
					}
					if !bytes.Equal(c, want.GetChunk()) {
						t.Fatalf("split %d: the chunk changed with the receive buffers", split)
					}
				}
			}
		})
	}
}
