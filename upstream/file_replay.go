package upstream

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime/multipart"

	"go.opentelemetry.io/otel/attribute"
)

// resend is Finish's retry loop for a replayable upload whose first
// attempt failed with first: the loop of doJSON (retryDelay, maxRetries,
// fitsDeadline, the client's wait, the same metrics and log line), each
// attempt re-sending the whole file from Replay. It returns first itself
// when the upload is not replayable or the policy does not retry it.
func (u *FileUpload) resend(first *Error) (*SecureFileResponse, error) {
	if u.replay == nil {
		return nil, first
	}
	c, e := u.client, endpointSecureFile
	// NOTE: bounded by the caller's ctx (never past its deadline: a caller
	// who has gone gets no retry) and by the upload's file timeout.
	ctx, cancel := context.WithDeadline(u.callerCtx, u.deadline)
	defer cancel()
	// Abandon reaches a replay as it reaches every other request: a
	// shutdown must not wait on a re-sent upload.
	ctx, release := c.track(ctx)
	defer release()
	policy := retryPolicies[e]
	uerr := first
	mayHaveActed := false
	for attempt := 0; ; attempt++ {
		// NOTE: marked before NothingDone is asked again: a refusal after
		// an attempt that may have stored does not make the call harmless.
		uerr.AfterAmbiguousAttempt = mayHaveActed
		mayHaveActed = mayHaveActed || !uerr.NothingDone()
		delay, retry := retryDelay(policy, uerr, attempt)
		if !retry || attempt >= c.maxRetries || !fitsDeadline(ctx, delay) {
			return nil, uerr
		}
		c.metrics.retry(ctx, e, uerr.NothingDone())
		c.log.WarnContext(ctx, "retrying upstream call",
			slog.String("endpoint", e.String()),
			slog.String("kind", uerr.Kind.String()),
			slog.Int("status", uerr.Status),
			slog.Int("attempt", attempt+1),
			slog.Duration("delay", delay),
			slog.Bool("from_spool", true))
		if werr := c.wait(ctx, delay); werr != nil {
			return nil, uerr
		}
		resp, err := u.sendReplay(ctx)
		if err == nil {
			if mayHaveActed {
				// An earlier attempt may have stored too: count the
				// possible extra copy.
				c.metrics.possibleDuplicate(ctx, e)
			}
			return resp, nil
		}
		next, ok := errors.AsType[*Error](err)
		if !ok {
			// The spool could not be read: nothing more can be sent, and
			// what the upstream did is what the attempts so far say.
			c.log.ErrorContext(ctx, "re-sending a file upload failed: its spool could not be read",
				slog.String("error", err.Error()))
			uerr.AfterAmbiguousAttempt = mayHaveActed
			return nil, uerr
		}
		uerr = next
	}
}

// sendReplay sends the whole file once more, from Replay: the same form
// as the first attempt, its file part read from the reader Replay opens.
func (u *FileUpload) sendReplay(ctx context.Context) (*SecureFileResponse, error) {
	c, e := u.client, endpointSecureFile
	file, err := u.replay()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	form := multipart.NewWriter(&buf)
	if _, err := openFilePart(form, u.publicKey, u.metadataJSON); err != nil {
		file.Close()
		return nil, err
	}
	head := bytes.Clone(buf.Bytes())
	buf.Reset()
	if err := form.Close(); err != nil {
		file.Close()
		return nil, err
	}
	// The transport closes the body, and with it the replay reader.
	body := struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(head), file, &buf), file}
	req, err := c.newRequest(ctx, e, body, form.FormDataContentType())
	if err != nil {
		file.Close()
		return nil, err
	}
	req.ContentLength = -1 // chunked, as the first attempt

	ctx, span := c.tracer.Start(ctx, "upstream.SecureFile")
	defer span.End()
	span.SetAttributes(attribute.Bool("upstream.replay", true))
	resp, uerr := c.send(e, req.WithContext(ctx))
	if uerr != nil {
		recordOutcome(span, uerr)
		return nil, uerr
	}
	raw, err := readJSONBody(e, resp)
	var out *SecureFileResponse
	if err == nil {
		out, err = decodeFileReply(e, raw)
	}
	recordOutcome(span, err)
	if err != nil {
		return nil, err
	}
	span.SetAttributes(attribute.String("backup_id", out.BackupID))
	return out, nil
}
