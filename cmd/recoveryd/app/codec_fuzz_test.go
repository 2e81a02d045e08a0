package app

import (
	"strings"
	"testing"

	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// FuzzRequestCodec holds requestCodec to its promise for any bytes: it
// never fails a RecoveryService request; what protobuf decodes comes out
// exactly as protobuf decodes it (less a forged marker) and unmarked; what
// protobuf refuses comes out empty and marked, as a UTF-8 problem exactly
// when protobuf's refusal was about UTF-8.
func FuzzRequestCodec(f *testing.F) {
	valid, err := proto.Marshal(assignKeyRequest("alice", recoveryv1.KeyEnvironment_KEY_ENVIRONMENT_HOT))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(valid)
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("bad\xff")))
	f.Add(valid[:len(valid)-3])
	f.Add(protowire.AppendBytes(protowire.AppendTag(valid, markerField, protowire.BytesType), []byte{2, 1}))
	nested := protowire.AppendBytes(protowire.AppendTag(nil, 1, protowire.BytesType), []byte("x\xc3"))
	f.Add(protowire.AppendBytes(protowire.AppendTag(nil, 3, protowire.BytesType), nested))
	f.Add([]byte{})

	messages := []func() proto.Message{
		func() proto.Message { return &recoveryv1.AssignKeyRequest{} },
		func() proto.Message { return &recoveryv1.SecureFileRequest{} },
		func() proto.Message { return &recoveryv1.SecureDataRequest{} },
		func() proto.Message { return &recoveryv1.ListBackupsRequest{} },
	}
	codec := newRequestCodec(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, newMsg := range messages {
			got := newMsg()
			if err := codec.Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, got); err != nil {
				t.Fatalf("%T: Unmarshal failed: %v", got, err)
			}
			want := newMsg()
			decodeErr := proto.Unmarshal(data, want)
			marked := undecodable(got)
			if decodeErr == nil {
				if marked != nil {
					t.Fatalf("%T: a decodable message was marked: %v", got, marked)
				}
				stripMarker(want)
				if !proto.Equal(got, want) {
					t.Fatalf("%T: codec decoded %v, protobuf %v", got, got, want)
				}
				continue
			}
			if marked == nil || len(marked.Violations) != 1 {
				t.Fatalf("%T: undecodable bytes (%v) not marked: %v", got, decodeErr, marked)
			}
			fields := 0
			got.ProtoReflect().Range(func(_ protoreflect.FieldDescriptor, _ protoreflect.Value) bool { fields++; return true })
			if fields != 0 {
				t.Fatalf("%T: an undecodable message kept %d fields", got, fields)
			}
			isUTF8 := strings.Contains(decodeErr.Error(), "invalid UTF-8")
			if rule := marked.Violations[0].Proto.GetRuleId(); (rule == "proto.utf8") != isUTF8 {
				t.Fatalf("%T: protobuf said %q, the marker says %s", got, decodeErr, rule)
			}
		}
	})
}
