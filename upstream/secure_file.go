package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/textproto"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// Multipart layout of POST /v1/partner/secure/file.
const (
	// filePartName and fileContentType are fixed by the contract; any other
	// part Content-Type is answered with 415.
	filePartName    = "file"
	fileContentType = "application/octet-stream"
	// filePartFilename is the filename sent with the file part. It is fixed
	// because the bytes are ciphertext; the caller's original name travels
	// in metadata, where the contract puts it.
	filePartFilename = "encrypted.bin"
)

// errUploadFinished closes the body pipe once the transport is done with
// it, unblocking a writer still waiting there.
var errUploadFinished = errors.New("upload finished")

// SecureFileRequest is POST /v1/partner/secure/file. File is streamed into
// the multipart body as it is read; if File.Read returns an error other than
// io.EOF (e.g. io.PipeWriter.CloseWithError) or ctx ends, the request is
// aborted mid-body so the upstream stores nothing.
type SecureFileRequest struct {
	PublicKey string
	Metadata  Metadata
	File      io.Reader
}

// SecureFileResponse is the 200 body of POST /v1/partner/secure/file.
type SecureFileResponse struct {
	BackupID   string
	BackupType string // "file"
	Metadata   Metadata
	StoredAt   time.Time
}

// SecureFile calls POST /v1/partner/secure/file, streaming req.File.
//
// The body is produced by a goroutine writing the multipart form into an
// io.Pipe while the transport sends it chunked, so memory stays bounded
// whatever the file size. If req.File fails, the error returned wraps both
// ErrUploadAborted and the reader's error. The call is never retried: the
// file is a one-shot stream.
//
// After a success the writer goroutine has finished. After a failure (an
// early answer such as 413, a reader error, ctx ending) SecureFile returns
// at once, without waiting for a req.File.Read in progress: the goroutine
// stops at its next write to the closed body, so the caller may close its
// reader (e.g. its io.PipeReader) to release it.
func (c *Client) SecureFile(ctx context.Context, req SecureFileRequest) (_ *SecureFileResponse, err error) {
	e := endpointSecureFile
	ctx, span := c.tracer.Start(ctx, "upstream.SecureFile")
	defer span.End()
	defer func() { recordOutcome(span, err) }()

	switch {
	case req.PublicKey == "":
		return nil, invalidRequest(e, "public_key", "is required")
	case req.File == nil:
		return nil, invalidRequest(e, "file", "is required")
	}
	var metadataJSON []byte
	if md := metadataWire(req.Metadata); md != nil {
		if metadataJSON, err = json.Marshal(md); err != nil {
			return nil, &Error{Kind: KindInvalid, Endpoint: e.String(), Message: "request not sent: encoding metadata failed", Err: err}
		}
	}

	ctx, cancel := context.WithTimeout(ctx, c.fileTimeout)
	defer cancel()

	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	httpReq, err := c.newRequest(ctx, e, pr, form.FormDataContentType())
	if err != nil {
		return nil, err
	}
	src := &fileSource{r: req.File}
	written := make(chan struct{})
	go func() {
		defer close(written)
		// NOTE: CloseWithError(nil) is a clean EOF; any error aborts the
		// transport's body read, so the request ends mid-body.
		pw.CloseWithError(writeFileForm(form, req.PublicKey, metadataJSON, src))
	}()
	// NOTE: the transport does not return from a cancelled request until
	// its body Read returns, and that Read waits on the writer, which may be
	// blocked in req.File.Read. Closing the pipe when ctx ends breaks that
	// chain, so cancellation aborts the request at once.
	stop := context.AfterFunc(ctx, func() { pr.CloseWithError(ctx.Err()) })
	defer stop()

	httpReq.ContentLength = -1 // chunked: the size is not known up front

	resp, uerr := c.send(e, httpReq)
	// The transport is done with the body (or gave up on it): unblock the
	// writer if it still waits on the pipe.
	pr.CloseWithError(errUploadFinished)
	if uerr == nil {
		// NOTE: a 2xx means the whole form was read, so the writer is done
		// or about to be; wait so no goroutine outlives a success.
		select {
		case <-written:
		case <-ctx.Done():
		}
	}
	span.SetAttributes(attribute.Int64("upstream.file_bytes", src.count()))

	if srcErr := src.failure(); srcErr != nil {
		if resp != nil {
			resp.Body.Close()
		}
		return nil, fmt.Errorf("upstream %s: %w: %w", e, ErrUploadAborted, srcErr)
	}
	if uerr != nil {
		return nil, uerr
	}
	raw, err := readJSONBody(e, resp)
	if err != nil {
		return nil, err
	}
	r, md, storedAt, err := decodeBackup(e, raw, "file")
	if err != nil {
		return nil, err
	}
	span.SetAttributes(attribute.String("backup_id", r.BackupID))
	return &SecureFileResponse{BackupID: r.BackupID, BackupType: r.BackupType, Metadata: md, StoredAt: storedAt}, nil
}

// writeFileForm writes the whole multipart form: public_key, metadata
// (when set), then the file part streamed from src. It returns nil only if
// the form is complete; any error leaves the form unterminated.
func writeFileForm(form *multipart.Writer, publicKey string, metadataJSON []byte, src io.Reader) error {
	if err := form.WriteField("public_key", publicKey); err != nil {
		return err
	}
	if metadataJSON != nil {
		if err := form.WriteField("metadata", string(metadataJSON)); err != nil {
			return err
		}
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, filePartName, filePartFilename))
	h.Set("Content-Type", fileContentType)
	part, err := form.CreatePart(h)
	if err != nil {
		return err
	}
	if _, err := io.Copy(part, src); err != nil {
		return err
	}
	return form.Close()
}

// fileSource wraps the caller's reader to count bytes and keep its first
// failure, which SecureFile reports instead of the transport's echo of it.
type fileSource struct {
	r io.Reader

	mu  sync.Mutex
	n   int64
	err error
}

func (s *fileSource) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	s.mu.Lock()
	s.n += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && s.err == nil {
		s.err = err
	}
	s.mu.Unlock()
	return n, err
}

func (s *fileSource) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

func (s *fileSource) count() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}
