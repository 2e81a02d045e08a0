package app

import (
	"bytes"
	"encoding/binary"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

// TestFlowControlWindowsAreFixed: recoveryd advertises its fixed HTTP/2
// receive windows (streamWindowBytes per call, connWindowBytes per
// connection) and does not grow them: grpc-go's bandwidth-delay estimator,
// which would raise the per-call window up to 16 MiB and so let every
// SecureFile upload park that much unread data in memory, is off. The
// estimator pings the client on the first DATA frame it receives; the test
// sends one, then a PING of its own, and since the server handles frames in
// order and queues its own in order, a server PING would arrive before the
// answer to ours. The test speaks raw HTTP/2, as in before_auth_test.go.
func TestFlowControlWindowsAreFixed(t *testing.T) {
	log, _ := newTestLogger(t)
	up := startUpstream(t, t.TempDir(), log, nil)
	lis, err := (&net.ListenConfig{}).Listen(testCtx(t), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	startReady(t, remoteConfig(t, up, t.TempDir()), log, Options{Listener: lis})

	fr := dialRawHTTP2(t, lis.Addr().String())

	// The server's preface opens with its SETTINGS.
	var streamWindow uint32
	for streamWindow == 0 {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading the server's SETTINGS: %v", err)
		}
		if f, ok := f.(*http2.SettingsFrame); ok && !f.IsAck() {
			v, ok := f.Value(http2.SettingInitialWindowSize)
			if !ok {
				v = 65535 // HTTP/2's default: not fixed by recoveryd
			}
			streamWindow = v
			if err := fr.WriteSettingsAck(); err != nil {
				t.Fatal(err)
			}
		}
	}
	if streamWindow != streamWindowBytes {
		t.Errorf("SETTINGS_INITIAL_WINDOW_SIZE = %d, want %d", streamWindow, streamWindowBytes)
	}

	// One call with one DATA frame, then our PING.
	var block bytes.Buffer
	enc := hpack.NewEncoder(&block)
	for _, f := range [][2]string{
		{":method", "POST"}, {":scheme", "http"}, {":path", "/grpc.health.v1.Health/Check"}, {":authority", "recoveryd"},
		{"content-type", "application/grpc"}, {"te", "trailers"},
	} {
		if err := enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block.Bytes(), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	req, err := proto.Marshal(&healthpb.HealthCheckRequest{Service: serviceName})
	if err != nil {
		t.Fatal(err)
	}
	msg := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(req))) //nolint:gosec // a request of a few bytes.
	if err := fr.WriteData(1, true, append(msg, req...)); err != nil {
		t.Fatal(err)
	}
	ours := [8]byte{'r', 'e', 'c', 'o', 'v', 'e', 'r', 'y'}
	if err := fr.WritePing(false, ours); err != nil {
		t.Fatal(err)
	}
	// Everything the server sends until it answers our PING: the
	// connection window's raise (part of its preface) and, were the
	// estimator on, its PING after our DATA frame.
	connWindow := uint32(65535) // HTTP/2's initial connection window
	for answered := false; !answered; {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading until the PING's answer: %v", err)
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			answered = f.IsAck() && f.Data == ours
			if !f.IsAck() {
				t.Errorf("the server sent a PING %x after the first DATA frame: its bandwidth-delay estimator (window growth) is on", f.Data)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				connWindow += f.Increment
			}
		}
	}
	if connWindow != connWindowBytes {
		t.Errorf("connection window = %d, want %d", connWindow, connWindowBytes)
	}
}
