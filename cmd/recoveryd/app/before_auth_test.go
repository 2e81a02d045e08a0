package app

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// TestUnauthenticatedCallsRefusedBeforeTheirMessage: a call without valid
// credentials is refused from its headers (InTapHandle), before its message
// is read. Its 4 MiB message is over the 2 MiB limit, so had the server
// read even its length prefix the answer would be RESOURCE_EXHAUSTED (as it
// is for an authenticated caller); instead it is UNAUTHENTICATED, counted
// by recovery_auth_decisions_total, and no gRPC stream was ever created for
// it: the per-method call metric does not move and no handler runs.
func TestUnauthenticatedCallsRefusedBeforeTheirMessage(t *testing.T) {
	log, logs := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	var finished atomic.Int64
	srv := startReady(t, authenticatedConfig(t, up), log, Options{CallFinished: func(string) { finished.Add(1) }})
	addr := adminAddress(t, logs.String())
	ctx := testCtx(t)
	key := assignKey(t, withToken(ctx, walletAPI.token), srv.client, "user-before-auth")
	finishedBefore := finished.Load()

	big := secureDataByKeyID(key.GetKeyId(), []byte(strings.Repeat("s", 4<<20)))
	const secureData = "recovery.v1.RecoveryService/SecureData"
	callsOf := func(s scrape) float64 {
		return s.value("rpc_server_call_duration_seconds", map[string]string{"rpc_method": secureData})
	}
	refusals := func(s scrape, reason string) float64 {
		return s.value("recovery_auth_decisions_total", map[string]string{"stage": "authenticate", "outcome": "denied", "reason": reason})
	}
	before := scrapeMetrics(t, addr)

	_, err := srv.client.SecureData(ctx, big)
	wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_MISSING")
	_, err = srv.client.SecureData(withToken(ctx, "not-a-caller-token"), big)
	wantStatus(t, err, codes.Unauthenticated, "CALLER_TOKEN_INVALID")

	after := scrapeMetrics(t, addr)
	for _, reason := range []string{"CALLER_TOKEN_MISSING", "CALLER_TOKEN_INVALID"} {
		if got := refusals(after, reason) - refusals(before, reason); got != 1 {
			t.Errorf("recovery_auth_decisions_total{reason=%s} grew by %v, want 1", reason, got)
		}
	}
	if got := callsOf(after) - callsOf(before); got != 0 {
		t.Errorf("the refused calls were measured as %v SecureData calls: a stream was created for them, want none", got)
	}
	if n := finished.Load() - finishedBefore; n != 0 {
		t.Errorf("%d handlers ran for refused calls", n)
	}

	// The same message from a known caller is read, up to the limit.
	_, err = srv.client.SecureData(withToken(ctx, walletAPI.token), big)
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("an authenticated 4 MiB SecureData = %v, want RESOURCE_EXHAUSTED (the message limit)", err)
	}
	if got := callsOf(scrapeMetrics(t, addr)) - callsOf(after); got != 1 {
		t.Errorf("the authenticated call was measured %v times, want 1", got)
	}
}

// TestOversizedHeadersRefused: a call whose header list is over 16 KiB (a
// 64 KiB of metadata) is reset by the server before any of recoveryd's
// code runs for it, even with a valid token. grpc-go clients refuse to send
// such a call themselves (the server advertises its limit), so the test
// speaks raw HTTP/2, as a hostile client would. Without the limit (grpc-go's
// default is 16 MiB) the handler would answer.
func TestOversizedHeadersRefused(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	var handled atomic.Int64
	lis, err := (&net.ListenConfig{}).Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startReady(t, authenticatedConfig(t, up), log, Options{Listener: lis, CallFinished: func(method string) {
		if strings.HasPrefix(method, "/recovery.v1.") {
			handled.Add(1)
		}
	}})

	for _, tc := range []struct {
		name       string
		paddingKiB int
		want       string
	}{
		{"ordinary headers", 1, "grpc-status 5"}, // NOT_FOUND, from the handler
		// grpc-go's framer ends the connection (GOAWAY PROTOCOL_ERROR, then
		// close) once the list is over the limit and more CONTINUATION
		// frames follow; a list that ends within one frame gets RST_STREAM.
		{"64 KiB of headers", 64, "refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := handled.Load()
			got := rawGetKey(t, lis.Addr().String(), tc.paddingKiB)
			if tc.want == "refused" && !strings.HasPrefix(got, "grpc-status") {
				got = "refused"
			}
			if got != tc.want {
				t.Errorf("server answered %q, want %q", got, tc.want)
			}
			wantHandled := int64(1)
			if tc.paddingKiB<<10 > maxHeaderListBytes {
				wantHandled = 0
			}
			if n := handled.Load() - before; n != wantHandled {
				t.Errorf("%d handlers ran, want %d", n, wantHandled)
			}
		})
	}
}

// dialRawHTTP2 opens a plain TCP connection to addr, bounded by the test's
// deadline and closed when the test ends, sends the HTTP/2 client preface
// and empty SETTINGS, and returns a framer on it that decodes headers.
func dialRawHTTP2(t *testing.T, addr string) *http2.Framer {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(testCtx(t), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if dl, ok := testCtx(t).Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	if _, err := io.WriteString(conn, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(conn, conn)
	fr.ReadMetaHeaders = hpack.NewDecoder(64<<10, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return fr
}

// rawGetKey sends one GetKey over a fresh HTTP/2 connection, with
// walletAPI's token and paddingKiB headers of 1 KiB each, ignoring the server's
// advertised header list limit, and says how the stream ended: "grpc-status
// N" or "RST_STREAM <code>".
func rawGetKey(t *testing.T, addr string, paddingKiB int) string {
	t.Helper()
	fr := dialRawHTTP2(t, addr)
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	fields := [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/recovery.v1.RecoveryService/GetKey"}, {":authority", addr},
		{"content-type", "application/grpc"}, {"te", "trailers"},
		{"authorization", "Bearer " + walletAPI.token},
	}
	for i := range paddingKiB {
		fields = append(fields, [2]string{fmt.Sprintf("x-padding-%d", i), strings.Repeat("p", 1<<10)})
	}
	for _, f := range fields {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	const frameMax = 16 << 10 // HTTP/2's default SETTINGS_MAX_FRAME_SIZE
	b := block.Bytes()
	first := b[:min(len(b), frameMax)]
	b = b[len(first):]
	// NOTE: a write may fail once the server has given up on the
	// connection; what it sent before closing says why.
	err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: first, EndHeaders: len(b) == 0})
	for err == nil && len(b) > 0 {
		chunk := b[:min(len(b), frameMax)]
		b = b[len(chunk):]
		err = fr.WriteContinuation(1, len(b) == 0, chunk)
	}
	if err == nil {
		req, merr := proto.Marshal(&recoveryv1.GetKeyRequest{KeyId: "6f1c2a9e-0000-4000-8000-000000000001"})
		if merr != nil {
			t.Fatal(merr)
		}
		msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(req))) //nolint:gosec // a GetKeyRequest of a few bytes.
		err = fr.WriteData(1, true, append(msg, req...))
	}
	if err != nil {
		t.Logf("writing the call: %v", err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return "connection closed"
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				_ = fr.WriteSettingsAck()
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == 1 {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.MetaHeadersFrame:
			if s := f.PseudoValue("status"); s != "" && s != "200" {
				return "HTTP " + s
			}
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					return "grpc-status " + hf.Value
				}
			}
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		}
	}
}
