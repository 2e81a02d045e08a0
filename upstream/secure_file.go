package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
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

// fileReadBuffer is how much of SecureFileRequest.File SecureFile reads
// per Write, io.Copy's default.
const fileReadBuffer = 32 << 10

// SecureFileRequest is POST /v1/partner/secure/file. File is the file for
// SecureFile; StartSecureFile refuses it, because there the file is what
// is written to the upload.
type SecureFileRequest struct {
	PublicKey string
	Metadata  Metadata
	File      io.Reader
	// Replay, for StartSecureFile only, makes the upload re-sendable: it
	// returns a reader of every byte written to the upload, in order (a
	// spool the caller kept while writing). With it, a failure that the
	// retry policy retries (a 5xx, a reset, a timeout, a 429) is not the
	// end: the caller goes on writing (the bytes reach only its spool), and
	// Finish re-sends the whole file from Replay; see FileUpload. Finish
	// closes each reader it opens. nil keeps the upload one-shot.
	Replay func() (io.ReadCloser, error)
}

// SecureFileResponse is the 200 body of POST /v1/partner/secure/file.
type SecureFileResponse struct {
	BackupID   string
	BackupType string // "file"
	Metadata   Metadata
	StoredAt   time.Time
}

// uploadState is where a FileUpload is in its life.
type uploadState int

const (
	uploadWriting   uploadState = iota // the body is open
	uploadFinishing                    // Finish began: the body is (being) completed
	uploadAborted                      // Abort or ctx ended it mid-body
)

// FileUpload is one POST /v1/partner/secure/file in progress, fed by its
// caller: what is written becomes the file part of the multipart body and
// is sent as it is written, through a single io.Pipe read by the one
// goroutine that runs the request. The upstream stores a file only once it
// has the whole form, and only Finish writes the form's closing boundary,
// so an upload that does not reach Finish stores nothing.
//
// The rules:
//   - Write returns once the transport has taken p (the pipe holds no
//     copy), so memory stays bounded whatever the file size. Write and
//     Finish are called from one goroutine; Abort may be called from any.
//   - Abort(cause) ends the request mid-body and returns once the request
//     has ended. It is idempotent (the first cause is kept) and does
//     nothing once Finish has begun: the body is then complete, and its
//     answer is what says whether the file was stored. Write and Finish
//     after Abort return the cause.
//   - The ctx given to StartSecureFile, bounded by Config.FileTimeout,
//     aborts the upload while the body is open, with an *Error of
//     KindUnavailable wrapping context.Cause(ctx). Finish detaches it: a
//     complete file is answered, and the answer returned, even if the
//     caller has gone (the request stays bounded by the file timeout).
//   - If the request ends by itself (the upstream answers early, e.g. 413
//     or 404, or the connection fails), the next Write or Finish returns
//     its *Error.
//   - Finish completes the body and returns the upstream's answer: the
//     typed *Error on failure. Calling it again returns the same result.
//
// Every upload must end with Finish or Abort, both of which wait for the
// request goroutine, so none outlives them.
//
// Without SecureFileRequest.Replay the request is never retried: the file is
// a one-shot stream. With it:
//   - If the request fails while the body is open in a way retryPolicies
//     retries (the upstream answered 5xx or 429 early, the connection
//     failed), Write keeps accepting bytes without sending them (the
//     caller's spool has them); the upstream stored nothing, as the form
//     never ended. Aborts and a ctx that ended still fail Write.
//   - Finish then re-sends the whole file from Replay, or, if the complete
//     body failed, re-sends it the same way: with the adapter's retry
//     policy (backoff with full jitter, Retry-After, maxRetries, never past
//     the ctx given to StartSecureFile nor the file timeout), counting the
//     retries and the possible extra copies like SecureData's.
type FileUpload struct {
	pw           *io.PipeWriter
	form         *multipart.Writer
	part         io.Writer // the file part; nil until the first Write
	publicKey    string
	metadataJSON []byte
	written      atomic.Int64

	// bodyCtx is the caller's ctx bounded by the file timeout; detach
	// stops it from aborting the upload, and Finish calls it first.
	bodyCtx    context.Context
	bodyCancel context.CancelFunc
	detach     func() bool
	// cancel ends the request's own context, which the caller's
	// cancellation does not reach (see StartSecureFile).
	cancel context.CancelFunc

	mu    sync.Mutex
	state uploadState
	cause error // why it was aborted

	done   chan struct{} // closed when the request goroutine returns
	resp   *SecureFileResponse
	status int // of a 2xx answer
	err    error

	// client, callerCtx and deadline are what Finish re-sends with.
	client    *Client
	callerCtx context.Context
	deadline  time.Time
	// replay is SecureFileRequest.Replay; nil: one-shot.
	replay func() (io.ReadCloser, error)
	// deferred is the retryable failure of a body that could not be
	// completed; Write keeps accepting bytes, and Finish re-sends.
	deferred *Error
}

// StartSecureFile starts POST /v1/partner/secure/file and returns the
// upload to write the file to; see FileUpload for the rules. req.File
// must be nil. It fails only on a request it refuses to send; failures of
// the request itself are returned by Write or Finish.
func (c *Client) StartSecureFile(ctx context.Context, req SecureFileRequest) (*FileUpload, error) {
	e := endpointSecureFile
	switch {
	case req.PublicKey == "":
		return nil, invalidRequest(e, "public_key", "is required")
	case req.File != nil:
		return nil, invalidRequest(e, "file", "must be nil: the file is what is written to the upload")
	}
	var metadataJSON []byte
	if md := metadataWire(req.Metadata); md != nil {
		var err error
		if metadataJSON, err = json.Marshal(md); err != nil {
			return nil, &Error{Kind: KindInvalid, Endpoint: e.String(), Message: "request not sent: encoding metadata failed", Err: err}
		}
	}

	// NOTE: the request runs on a context the caller's cancellation does
	// not reach, so that a complete body can still be answered; the
	// caller's ctx ends the body instead, through bodyCtx, until Finish.
	deadline := time.Now().Add(c.fileTimeout)
	reqCtx, cancelDeadline := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	// Abandon reaches the upload whatever the caller does.
	reqCtx, release := c.track(reqCtx)
	cancel := func() {
		release()
		cancelDeadline()
	}
	bodyCtx, bodyCancel := context.WithDeadline(ctx, deadline)
	pr, pw := io.Pipe()
	form := multipart.NewWriter(pw)
	httpReq, err := c.newRequest(reqCtx, e, pr, form.FormDataContentType())
	if err != nil {
		cancel()
		bodyCancel()
		return nil, err
	}
	httpReq.ContentLength = -1 // chunked: the size is not known up front

	u := &FileUpload{
		pw:           pw,
		form:         form,
		publicKey:    req.PublicKey,
		metadataJSON: metadataJSON,
		bodyCtx:      bodyCtx,
		bodyCancel:   bodyCancel,
		cancel:       cancel,
		done:         make(chan struct{}),
		client:       c,
		callerCtx:    ctx,
		deadline:     deadline,
		replay:       req.Replay,
	}
	go u.run(c, httpReq, pr)
	u.detach = context.AfterFunc(bodyCtx, func() { u.abort(u.bodyEnded()) })
	return u, nil
}

// run is the upload's one goroutine: it sends the request, whose body is
// the pipe, and keeps the outcome for Write and Finish.
func (u *FileUpload) run(c *Client, req *http.Request, pr *io.PipeReader) {
	e := endpointSecureFile
	defer close(u.done)
	defer u.cancel()
	ctx, span := c.tracer.Start(req.Context(), "upstream.SecureFile")
	defer span.End()

	resp, uerr := c.send(e, req.WithContext(ctx))
	// The transport is done with the body (or gave up on it): a Write
	// blocked on the pipe fails now and learns why from the outcome.
	pr.Close()
	span.SetAttributes(attribute.Int64("upstream.file_bytes", u.written.Load()))
	if uerr != nil {
		u.err = uerr
		recordOutcome(span, uerr)
		return
	}
	u.status = resp.StatusCode
	raw, err := readJSONBody(e, resp)
	if err == nil {
		u.resp, err = decodeFileReply(e, raw)
	}
	u.err = err
	if err == nil {
		span.SetAttributes(attribute.String("backup_id", u.resp.BackupID))
	}
	recordOutcome(span, u.err)
}

// decodeFileReply checks a 2xx answer's body.
func decodeFileReply(e endpoint, raw []byte) (*SecureFileResponse, error) {
	r, md, storedAt, err := decodeBackup(e, raw, "file")
	if err != nil {
		return nil, err
	}
	return &SecureFileResponse{BackupID: r.BackupID, BackupType: r.BackupType, Metadata: md, StoredAt: storedAt}, nil
}

// Write sends p as the next bytes of the file. See FileUpload for when it
// fails and with what.
func (u *FileUpload) Write(p []byte) (int, error) {
	u.mu.Lock()
	state, cause := u.state, u.cause
	u.mu.Unlock()
	switch state {
	case uploadAborted:
		return 0, cause
	case uploadFinishing:
		return 0, errors.New("upstream: Write on a FileUpload after Finish")
	}
	if u.deferred != nil {
		return len(p), nil // the caller's spool has them; Finish re-sends
	}
	if u.part == nil {
		part, err := openFilePart(u.form, u.publicKey, u.metadataJSON)
		if err != nil {
			return u.failedMidBody(p, 0)
		}
		u.part = part
	}
	n, err := u.part.Write(p)
	u.written.Add(int64(n))
	if err != nil {
		return u.failedMidBody(p, n)
	}
	return n, nil
}

// failedMidBody is Write's answer once the request ended before the body
// was complete (n bytes of p were sent): its error, or, when the upload is
// replayable and the policy retries that error, success, so that the caller
// goes on writing to its spool and Finish re-sends.
func (u *FileUpload) failedMidBody(p []byte, n int) (int, error) {
	err := u.ended()
	u.mu.Lock()
	aborted := u.cause != nil
	u.mu.Unlock()
	if ue, ok := errors.AsType[*Error](err); ok && !aborted {
		// NOTE: the form never ended, so the upstream stored nothing,
		// whatever the failure would say of a complete request.
		ue.Incomplete = true
		if u.replay != nil && u.bodyCtx.Err() == nil {
			if _, retry := retryDelay(retryPolicies[endpointSecureFile], ue, 0); retry {
				u.deferred = ue
				return len(p), nil
			}
		}
	}
	return n, err
}

// Abort ends the upload mid-body, so the upstream stores nothing, and
// returns once the request has ended. A nil cause stands for a generic
// one. See FileUpload for the rules.
func (u *FileUpload) Abort(cause error) {
	if cause == nil {
		cause = errors.New("upstream: file upload aborted")
	}
	u.detach()
	u.abort(cause)
}

// abort is Abort without detaching ctx, so the ctx hook can call it too.
func (u *FileUpload) abort(cause error) {
	u.mu.Lock()
	first := u.state == uploadWriting
	if first {
		u.state, u.cause = uploadAborted, cause
	}
	finishing := u.state == uploadFinishing
	u.mu.Unlock()
	if finishing {
		return
	}
	if first {
		// NOTE: CloseWithError before anything could close the body
		// normally: the transport's body read fails, so the request ends
		// without the form's closing boundary and the upstream discards
		// the partial file, even if its answer is already on the way.
		u.pw.CloseWithError(cause)
		u.cancel()
		u.bodyCancel()
	}
	<-u.done
}

// bodyEnded is the abort cause when bodyCtx ends while the body is open.
func (u *FileUpload) bodyEnded() error {
	return &Error{Kind: KindUnavailable, Endpoint: endpointSecureFile.String(), Sent: true,
		Message: "upload aborted: the context ended before the file was complete", Err: context.Cause(u.bodyCtx)}
}

// Finish completes the body and returns the upstream's answer. See
// FileUpload for the rules.
func (u *FileUpload) Finish() (*SecureFileResponse, error) {
	if !u.detach() {
		// bodyCtx has ended: its hook aborts the upload, unless Finish
		// already ran or someone aborted first.
		u.abort(u.bodyEnded())
	}
	u.mu.Lock()
	state, cause := u.state, u.cause
	if state == uploadWriting {
		u.state = uploadFinishing
	}
	u.mu.Unlock()
	switch state {
	case uploadAborted:
		<-u.done
		return nil, cause
	case uploadFinishing:
		<-u.done
		return u.result()
	}
	u.bodyCancel()
	if u.deferred != nil {
		return u.settle(u.resend(u.deferred))
	}
	if err := u.closeBody(); err != nil {
		err := u.ended()
		if ue, ok := errors.AsType[*Error](err); ok {
			ue.Incomplete = true // the closing boundary never went out
			return u.settle(u.resend(ue))
		}
		return nil, err
	}
	<-u.done
	resp, err := u.result()
	if ue, ok := errors.AsType[*Error](err); ok {
		return u.settle(u.resend(ue))
	}
	return resp, err
}

// settle keeps Finish's final outcome, for a second Finish.
func (u *FileUpload) settle(resp *SecureFileResponse, err error) (*SecureFileResponse, error) {
	u.resp, u.err = resp, err
	return resp, err
}

// closeBody writes the rest of the form and ends the pipe cleanly.
func (u *FileUpload) closeBody() error {
	if u.part == nil { // an empty file: the part still has to exist
		if _, err := openFilePart(u.form, u.publicKey, u.metadataJSON); err != nil {
			return err
		}
	}
	if err := u.form.Close(); err != nil {
		return err
	}
	return u.pw.Close()
}

// ended says why the pipe no longer takes bytes: the abort's cause, or
// else the request's own outcome, once it is known.
func (u *FileUpload) ended() error {
	<-u.done
	u.mu.Lock()
	cause := u.cause
	u.mu.Unlock()
	switch {
	case cause != nil:
		return cause
	case u.err != nil:
		return u.err
	}
	// A 2xx before the whole form arrived: the upstream cannot have
	// parsed the file it claims to have stored.
	return protocolError(endpointSecureFile, u.status, "answered before the file was complete")
}

func (u *FileUpload) result() (*SecureFileResponse, error) {
	if u.err != nil {
		return nil, u.err
	}
	return u.resp, nil
}

// SecureFile calls POST /v1/partner/secure/file with req.File as the file,
// through StartSecureFile. req.File is read in the calling goroutine, so a
// Read that blocks holds SecureFile up and ctx cannot interrupt it: a file
// that arrives from elsewhere is better written to a FileUpload as it
// comes. If req.File fails, the upload is aborted, nothing is stored, and
// the error wraps both ErrUploadAborted and the reader's error.
func (c *Client) SecureFile(ctx context.Context, req SecureFileRequest) (*SecureFileResponse, error) {
	file := req.File
	if file == nil {
		return nil, invalidRequest(endpointSecureFile, "file", "is required")
	}
	req.File = nil
	u, err := c.StartSecureFile(ctx, req)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, fileReadBuffer)
	for {
		n, rerr := file.Read(buf)
		if n > 0 {
			if _, err := u.Write(buf[:n]); err != nil {
				u.Abort(err)
				return nil, err
			}
		}
		switch {
		case errors.Is(rerr, io.EOF):
			return u.Finish()
		case rerr != nil:
			cause := fmt.Errorf("upstream %s: %w: %w", endpointSecureFile, ErrUploadAborted, rerr)
			u.Abort(cause)
			return nil, cause
		}
	}
}

// openFilePart writes the form's fields, public_key and metadata (when
// set), then the file part's header, and returns the part to write the
// file to. The form stays open until its Close.
func openFilePart(form *multipart.Writer, publicKey string, metadataJSON []byte) (io.Writer, error) {
	if err := form.WriteField("public_key", publicKey); err != nil {
		return nil, err
	}
	if metadataJSON != nil {
		if err := form.WriteField("metadata", string(metadataJSON)); err != nil {
			return nil, err
		}
	}
	h := make(textproto.MIMEHeader)
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, filePartName, filePartFilename))
	h.Set("Content-Type", fileContentType)
	return form.CreatePart(h)
}
