package app

import (
	"bytes"
	"unicode/utf8"

	"buf.build/gen/go/bufbuild/protovalidate/protocolbuffers/go/buf/validate"
	"buf.build/go/protovalidate"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// requestCodec is the server's codec: grpc-go's proto codec, except for
// requests of the RecoveryService that do not decode.
//
// grpc-go fails such a call with Internal ("failed to unmarshal") before any
// interceptor runs, which tells a caller who sent a string that is not UTF-8
// that the server is broken. Instead, requestCodec delivers the request as an
// empty message carrying an undecodable marker; the validation interceptor
// (after authentication, so an unauthenticated caller learns nothing) answers
// it with InvalidArgument, reason INVALID_REQUEST, naming the field.
//
// The marker lives in the message itself, in an unknown field only this
// codec writes (it strips one a caller sends), so there is no side table to
// leak or clear: it goes away with the message. Other services' messages
// (health, reflection) keep grpc-go's behaviour.
type requestCodec struct {
	encoding.CodecV2
	// chunks lends SecureFile chunks their buffers.
	chunks *chunkBuffers
}

// newRequestCodec wraps grpc-go's registered proto codec; chunks lends
// SecureFile chunks their buffers (see chunkBuffers).
func newRequestCodec(chunks *chunkBuffers) requestCodec {
	return requestCodec{CodecV2: encoding.GetCodecV2(grpcproto.Name), chunks: chunks}
}

// Unmarshal decodes data into v, marking a RecoveryService request that does
// not decode instead of failing.
func (c requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if req, ok := v.(*recoveryv1.SecureFileRequest); ok && c.decodeChunk(data, req) {
		return nil
	}
	err := c.CodecV2.Unmarshal(data, v)
	msg, ok := v.(proto.Message)
	if !ok || !isRecoveryRequest(msg) {
		return err
	}
	if err == nil {
		stripMarker(msg)
		return nil
	}
	fields, problem := diagnose(data.Materialize(), msg.ProtoReflect().Descriptor())
	proto.Reset(msg)
	markUndecodable(msg, problem, fields)
	return nil
}

// chunkField is SecureFileRequest's chunk field, and chunkTag its first
// byte on the wire.
var (
	chunkField = (&recoveryv1.SecureFileRequest{}).ProtoReflect().Descriptor().Fields().ByName("chunk").Number()
	chunkTag   = protowire.AppendTag(nil, chunkField, protowire.BytesType)
)

// decodeChunk decodes a SecureFileRequest made of one chunk field and
// nothing else (every message of a file after the header) with one copy of
// its bytes instead of two: grpc-go's codec copies the message out of its
// receive buffers into a pooled buffer, and protobuf copies the field out of
// that. Here the message is copied once into a buffer of its own, lent by
// c.chunks when it can (see chunkBuffers), and the chunk is that buffer,
// sliced so that it cannot grow past its own bytes. Anything else (the
// header, a malformed message) reports false and takes the usual path.
func (c requestCodec) decodeChunk(data mem.BufferSlice, req *recoveryv1.SecureFileRequest) bool {
	if data.Len() < len(chunkTag) || !bytes.HasPrefix(data[0].ReadOnlyData(), chunkTag) {
		return false
	}
	var b []byte
	lent := false
	if c.chunks != nil {
		b, lent = c.chunks.borrow(req, data.Len())
	} else {
		b = make([]byte, data.Len())
	}
	data.CopyTo(b)
	_, _, n := protowire.ConsumeTag(b)
	v, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		if lent {
			c.chunks.giveBack(req)
		}
		return false
	}
	proto.Reset(req)
	req.Msg = &recoveryv1.SecureFileRequest_Chunk{Chunk: v[:len(v):len(v)]}
	return true
}

// recoveryPackage is the proto package whose messages requestCodec marks.
var recoveryPackage = recoveryv1.File_recovery_v1_recovery_service_proto.Package()

// isRecoveryRequest reports whether msg belongs to the RecoveryService's
// package (the server only ever decodes requests).
func isRecoveryRequest(msg proto.Message) bool {
	return msg.ProtoReflect().Descriptor().ParentFile().Package() == recoveryPackage
}

// decodeProblem is why a request did not decode.
type decodeProblem uint64

const (
	// problemMalformed: the bytes are not a protobuf encoding of the message.
	problemMalformed decodeProblem = iota + 1
	// problemInvalidUTF8: a string field holds bytes that are not UTF-8.
	problemInvalidUTF8
)

// undecodableRules are the rule ids reported for each problem; they become
// the violation's reason (PROTO_WIRE, PROTO_UTF8).
var undecodableRules = map[decodeProblem]struct{ rule, description string }{
	problemMalformed:   {"proto.wire", "the request is not a valid protobuf encoding of its message"},
	problemInvalidUTF8: {"proto.utf8", "a string field is not valid UTF-8"},
}

// markerField is the unknown field that carries the marker: the highest
// field number protobuf allows, which no message of the API uses.
const markerField protowire.Number = protowire.MaxValidNumber

// maxDiagnoseDepth bounds the nesting diagnose follows; the API's requests
// nest three levels deep.
const maxDiagnoseDepth = 16

// diagnose finds why data does not decode as md: the path of the first
// string field that is not UTF-8 (field descriptors from the top), or
// problemMalformed with no path.
func diagnose(data []byte, md protoreflect.MessageDescriptor) ([]protoreflect.FieldDescriptor, decodeProblem) {
	if path, _ := invalidUTF8Path(data, md, 0); path != nil {
		return path, problemInvalidUTF8
	}
	return nil, problemMalformed
}

// invalidUTF8Path walks the wire bytes of one md message in order, as
// protobuf decodes them, and returns the path to the first string field
// whose bytes are not UTF-8. It stops, with malformed set, at the first
// bytes that are not protobuf: protobuf stops there too, so a string after
// them is not what made it fail.
func invalidUTF8Path(b []byte, md protoreflect.MessageDescriptor, depth int) (path []protoreflect.FieldDescriptor, malformed bool) {
	if depth > maxDiagnoseDepth {
		return nil, true
	}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		// NOTE: ConsumeTag admits numbers above the largest valid one;
		// protobuf refuses them, so the walk stops there too.
		if n < 0 || num > protowire.MaxValidNumber {
			return nil, true
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if typ != protowire.BytesType || fd == nil {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil, true
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil, true
		}
		b = b[n:]
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return []protoreflect.FieldDescriptor{fd}, false
			}
		case protoreflect.MessageKind:
			sub, bad := invalidUTF8Path(v, fd.Message(), depth+1)
			if sub != nil {
				return append([]protoreflect.FieldDescriptor{fd}, sub...), false
			}
			if bad {
				return nil, true
			}
		}
	}
	return nil, false
}

// markUndecodable writes the marker into msg's unknown fields: the problem,
// then the field numbers of the path.
func markUndecodable(msg proto.Message, problem decodeProblem, path []protoreflect.FieldDescriptor) {
	payload := protowire.AppendVarint(nil, uint64(problem))
	for _, fd := range path {
		payload = protowire.AppendVarint(payload, uint64(fd.Number())) //nolint:gosec // field numbers are 1 to 2^29-1.
	}
	marker := protowire.AppendTag(nil, markerField, protowire.BytesType)
	marker = protowire.AppendBytes(marker, payload)
	msg.ProtoReflect().SetUnknown(marker)
}

// stripMarker removes a marker field a caller sent, so that only this codec
// can mark a message.
func stripMarker(msg proto.Message) {
	m := msg.ProtoReflect()
	unknown := m.GetUnknown()
	if len(unknown) == 0 {
		return
	}
	var kept protoreflect.RawFields
	for b := unknown; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return // already decoded once, so this cannot happen; leave it
		}
		size := protowire.ConsumeFieldValue(num, typ, b[n:])
		if size < 0 {
			return
		}
		if num != markerField {
			kept = append(kept, b[:n+size]...)
		}
		b = b[n+size:]
	}
	m.SetUnknown(kept)
}

// undecodable returns the validation error for a message requestCodec
// marked, or nil for any other message. The error has the shape
// protovalidate gives, so one mapping (service.StatusFromValidation) turns
// both into the status callers get.
func undecodable(msg proto.Message) *protovalidate.ValidationError {
	m := msg.ProtoReflect()
	for b := m.GetUnknown(); len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil
		}
		b = b[n:]
		if num != markerField || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return nil
			}
			b = b[n:]
			continue
		}
		payload, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return nil
		}
		return markerViolation(m.Descriptor(), payload)
	}
	return nil
}

// markerViolation decodes a marker's payload into a one-violation error
// whose field path is resolved against md: only names from the message's
// own descriptors ever reach the caller.
func markerViolation(md protoreflect.MessageDescriptor, payload []byte) *protovalidate.ValidationError {
	code, n := protowire.ConsumeVarint(payload)
	if n < 0 {
		code = uint64(problemMalformed)
	}
	spec, ok := undecodableRules[decodeProblem(code)]
	if !ok {
		spec = undecodableRules[problemMalformed]
	}
	path := &validate.FieldPath{}
	for b := payload[max(n, 0):]; len(b) > 0 && md != nil; {
		num, n := protowire.ConsumeVarint(b)
		if n < 0 || num < uint64(protowire.MinValidNumber) || num > uint64(protowire.MaxValidNumber) {
			break
		}
		b = b[n:]
		fd := md.Fields().ByNumber(protowire.Number(num))
		if fd == nil {
			break
		}
		kind := descriptorpb.FieldDescriptorProto_Type(fd.Kind())
		path.Elements = append(path.Elements, &validate.FieldPathElement{
			FieldNumber: proto.Int32(int32(fd.Number())),
			FieldName:   proto.String(string(fd.Name())),
			FieldType:   &kind,
		})
		md = fd.Message()
	}
	v := &validate.Violation{
		RuleId:  proto.String(spec.rule),
		Message: proto.String(spec.description),
	}
	if len(path.Elements) > 0 {
		v.Field = path
	}
	return &protovalidate.ValidationError{Violations: []*protovalidate.Violation{{Proto: v}}}
}
