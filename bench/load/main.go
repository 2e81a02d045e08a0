// Command load is the other half of `make bench`'s pairs: the client a
// wallet provider would write against the Partner Key Service without
// recoveryd, and a Go gRPC load client for recoveryd's SecureFile (ghz
// sends client-streaming calls from a JSON array of messages, which for a
// 10 MiB file means base64 JSON the size of the file per call).
//
// Modes:
//
//	direct-data  parse the hex key once, then per call: RSA-OAEP-SHA256
//	             encrypt the plaintext, SHA-256 it, POST secure/data as JSON
//	             over a keep-alive HTTP client
//	direct-file  POST secure/file as a streamed multipart body
//	grpc-file    recoveryd SecureFile: a header, then -chunk-bytes chunks
//
// Every run is bounded by -n calls and -max-duration; each call by
// -timeout. It prints one JSON report (count, ok, errors, rps, latency
// percentiles in ns, bytes per second) on stdout, and exits 1 when any
// call failed.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	recoveryv1 "github.com/walletprovider/recoveryservice/gen/recovery/v1"
)

// minChunk and maxChunk bound -chunk-bytes: what recoveryd accepts for a
// SecureFile chunk but the last.
const (
	minChunk = 16 << 10
	maxChunk = 1 << 20
)

type options struct {
	mode        string
	target      string
	token       string
	keyHex      string
	keyID       string
	concurrency int
	total       int
	size        int
	chunk       int
	plaintext   int
	timeout     time.Duration
	maxDuration time.Duration
}

// report is the run's summary, in the units ghz's JSON uses (ns).
type report struct {
	Mode        string         `json:"mode"`
	Concurrency int            `json:"concurrency"`
	Count       int            `json:"count"`
	OK          int            `json:"ok"`
	Errors      map[string]int `json:"errors"`
	Seconds     float64        `json:"seconds"`
	RPS         float64        `json:"rps"`
	BytesPerSec float64        `json:"bytes_per_sec"`
	P50         int64          `json:"p50_ns"`
	P99         int64          `json:"p99_ns"`
	Max         int64          `json:"max_ns"`
}

func main() {
	var o options
	flag.StringVar(&o.mode, "mode", "", "direct-data, direct-file or grpc-file")
	flag.StringVar(&o.target, "target", "", "emulator base URL (direct-*) or recoveryd host:port (grpc-*)")
	flag.StringVar(&o.token, "token", "sandbox-partner-token", "partner bearer token (direct-*)")
	flag.StringVar(&o.keyHex, "public-key-hex", "", "the assigned key's public key, hex DER (direct-*)")
	flag.StringVar(&o.keyID, "key-id", "", "the assigned key's id (grpc-file)")
	flag.IntVar(&o.concurrency, "c", 4, "calls in flight at once")
	flag.IntVar(&o.total, "n", 100, "calls in all")
	flag.IntVar(&o.size, "size", 10<<20, "file bytes per call (*-file)")
	flag.IntVar(&o.chunk, "chunk-bytes", maxChunk, "bytes per SecureFile chunk message (grpc-file) and per write of the multipart body (direct-file), 16 KiB to 1 MiB")
	flag.IntVar(&o.plaintext, "plaintext-bytes", 64, "plaintext bytes per call (direct-data)")
	flag.DurationVar(&o.timeout, "timeout", 60*time.Second, "bound of one call")
	flag.DurationVar(&o.maxDuration, "max-duration", 5*time.Minute, "bound of the whole run; calls not started by then are not made")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	if o.concurrency < 1 || o.total < 1 || o.size < 1 || o.target == "" {
		return errors.New("-target, and -c, -n, -size of at least 1, are required")
	}
	if o.chunk < minChunk || o.chunk > maxChunk {
		return fmt.Errorf("-chunk-bytes %d: give %d to %d", o.chunk, minChunk, maxChunk)
	}
	var call func(ctx context.Context) error
	switch o.mode {
	case "direct-data":
		c, err := newDirect(o)
		if err != nil {
			return err
		}
		call = c.secureData
	case "direct-file":
		c, err := newDirect(o)
		if err != nil {
			return err
		}
		call = c.secureFile
	case "grpc-file":
		conn, err := grpc.NewClient(o.target, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close() }()
		g := &grpcFile{client: recoveryv1.NewRecoveryServiceClient(conn), keyID: o.keyID, file: fileBytes(o.size), chunk: o.chunk}
		if g.keyID == "" {
			return errors.New("grpc-file needs -key-id")
		}
		call = g.secureFile
	default:
		return fmt.Errorf("unknown -mode %q", o.mode)
	}
	rep := drive(o, call)
	out, err := json.Marshal(rep)
	if err != nil {
		return err
	}
	fmt.Println(string(out))
	if rep.OK != o.total {
		return fmt.Errorf("%d of %d calls succeeded: %v", rep.OK, o.total, rep.Errors)
	}
	return nil
}

// drive makes o.total calls, o.concurrency at a time.
func drive(o options, call func(ctx context.Context) error) report {
	deadline := time.Now().Add(o.maxDuration)
	var (
		next      atomic.Int64
		mu        sync.Mutex
		latencies = make([]time.Duration, 0, o.total)
		errs      = map[string]int{}
		wg        sync.WaitGroup
	)
	start := time.Now()
	for range o.concurrency {
		wg.Go(func() {
			for next.Add(1) <= int64(o.total) && time.Now().Before(deadline) {
				ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
				t := time.Now()
				err := call(ctx)
				d := time.Since(t)
				cancel()
				mu.Lock()
				if err != nil {
					errs[errorClass(err)]++
				} else {
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(latencies)
	pct := func(p float64) int64 {
		if len(latencies) == 0 {
			return 0
		}
		i := int(p * float64(len(latencies)-1))
		return latencies[i].Nanoseconds()
	}
	failed := 0
	for _, n := range errs {
		failed += n
	}
	rep := report{
		Mode: o.mode, Concurrency: o.concurrency, Count: len(latencies) + failed, OK: len(latencies), Errors: errs,
		Seconds: elapsed.Seconds(), RPS: float64(len(latencies)) / elapsed.Seconds(),
		P50: pct(0.50), P99: pct(0.99), Max: pct(1),
	}
	if strings.HasSuffix(o.mode, "-file") {
		rep.BytesPerSec = rep.RPS * float64(o.size)
	}
	return rep
}

// errorClass groups errors for the report: the gRPC code, the HTTP status
// or the error's text.
func errorClass(err error) string {
	if s, ok := status.FromError(err); ok {
		return s.Code().String() + ": " + s.Message()
	}
	return err.Error()
}

// fileBytes is the file every *-file call sends (random, so nothing
// compresses it on the way).
func fileBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// direct is the integrator's own client of the Partner Key Service.
type direct struct {
	base, token, keyHex string
	pub                 *rsa.PublicKey
	http                *http.Client
	plaintext           []byte
	file                []byte
	chunk               int
}

func newDirect(o options) (*direct, error) {
	der, err := hex.DecodeString(o.keyHex)
	if err != nil {
		return nil, fmt.Errorf("-public-key-hex: %w", err)
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("-public-key-hex: %w", err)
	}
	pub, ok := k.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("-public-key-hex is a %T, not an RSA key", k)
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	// Keep-alive: one idle connection per worker, so none is closed and
	// reopened between calls.
	t.MaxIdleConns = o.concurrency
	t.MaxIdleConnsPerHost = o.concurrency
	d := &direct{
		base: strings.TrimSuffix(o.target, "/"), token: o.token, keyHex: o.keyHex, pub: pub,
		http: &http.Client{Transport: t}, plaintext: bytes.Repeat([]byte{'s'}, o.plaintext),
	}
	if o.mode == "direct-file" {
		d.file, d.chunk = fileBytes(o.size), o.chunk
	}
	return d, nil
}

func (d *direct) secureData(ctx context.Context) error {
	ct, err := rsa.EncryptOAEP(sha256.New(), rand.Reader, d.pub, d.plaintext, nil)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(d.plaintext)
	body, err := json.Marshal(map[string]any{
		"public_key":   d.keyHex,
		"data":         base64.StdEncoding.EncodeToString(ct),
		"checksum":     hex.EncodeToString(sum[:]),
		"padding_type": "OAEP",
		"metadata":     map[string]string{"description": "bench"},
	})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/partner/secure/data", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return d.do(req)
}

func (d *direct) secureFile(ctx context.Context) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeForm(mw, d.keyHex, d.file, d.chunk))
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/partner/secure/file", pr)
	if err != nil {
		_ = pr.Close()
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	err = d.do(req)
	_ = pr.Close()
	return err
}

// writeForm writes the secure/file multipart body: public_key, metadata,
// then the file in writes of chunk bytes.
func writeForm(mw *multipart.Writer, keyHex string, file []byte, chunk int) error {
	if err := mw.WriteField("public_key", keyHex); err != nil {
		return err
	}
	if err := mw.WriteField("metadata", `{"description":"bench"}`); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="file"; filename="bench.bin"`)
	h.Set("Content-Type", "application/octet-stream")
	w, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	for off := 0; off < len(file); off += chunk {
		if _, err := w.Write(file[off:min(off+chunk, len(file))]); err != nil {
			return err
		}
	}
	return mw.Close()
}

func (d *direct) do(req *http.Request) error {
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := d.http.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	var out struct {
		BackupID string `json:"backup_id"`
	}
	if err := json.Unmarshal(body, &out); err != nil || out.BackupID == "" {
		return errors.New("200 without a backup_id")
	}
	return nil
}

// grpcFile streams a file to recoveryd's SecureFile.
type grpcFile struct {
	client recoveryv1.RecoveryServiceClient
	keyID  string
	file   []byte
	chunk  int
}

func (g *grpcFile) secureFile(ctx context.Context) error {
	stream, err := g.client.SecureFile(ctx)
	if err != nil {
		return err
	}
	header := &recoveryv1.SecureFileHeader{
		Key:      &recoveryv1.SecureFileHeader_KeyId{KeyId: g.keyID},
		Metadata: &recoveryv1.BackupMetadata{Description: "bench"},
	}
	if err := stream.Send(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Header{Header: header}}); err != nil {
		return err
	}
	for off := 0; off < len(g.file); off += g.chunk {
		chunk := g.file[off:min(off+g.chunk, len(g.file))]
		if err := stream.Send(&recoveryv1.SecureFileRequest{Msg: &recoveryv1.SecureFileRequest_Chunk{Chunk: chunk}}); err != nil {
			break // the status comes with CloseAndRecv
		}
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if resp.GetBackup().GetBackupId() == "" {
		return errors.New("OK without a backup_id")
	}
	return nil
}
