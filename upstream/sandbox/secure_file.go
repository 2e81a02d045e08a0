package sandbox

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"time"
)

// Limits of the secure/file body besides the file itself.
const (
	// multipartOverhead is what the body may carry beyond the file bytes:
	// boundaries, part headers, public_key and metadata.
	multipartOverhead = 1 << 20
	// maxMetadataPartBytes bounds the metadata part.
	maxMetadataPartBytes = 16 << 10
)

// Part names of the secure/file multipart body.
const (
	partPublicKey = "public_key"
	partFile      = "file"
	partMetadata  = "metadata"
)

// errBodyTooLarge is returned by cappedReader past its limit.
var errBodyTooLarge = errors.New("request body too large")

// secureFileResponse is the 200 body of POST /v1/partner/secure/file.
type secureFileResponse struct {
	BackupID   string           `json:"backup_id"`
	BackupType string           `json:"backup_type"`
	Metadata   responseMetadata `json:"metadata"`
}

// secureFile serves POST /v1/partner/secure/file. It streams the multipart
// body part by part (never buffering it whole), writes the file bytes to a
// staging upload as they arrive, and commits the backup only after the
// closing boundary has been read and every part validated: a body that is
// cut off, malformed, too large or of the wrong type stores nothing.
func (s *Server) secureFile(r *http.Request, _ *Token) (any, *apiError) {
	mediaType, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" {
		return nil, &apiError{Status: http.StatusUnsupportedMediaType, Type: errTypeUnsupportedMedia,
			Message: "Content-Type must be multipart/form-data"}
	}
	if params["boundary"] == "" {
		return nil, errInvalid("multipart/form-data Content-Type has no boundary")
	}
	limit := s.cfg.MaxFileBytes + multipartOverhead
	if r.ContentLength > limit {
		return nil, s.errFileTooLarge()
	}
	up, err := s.store.newUpload(s.cfg.MaxFileBytes)
	if err != nil {
		s.log.Error("sandbox: staging an upload failed", "error", err)
		return nil, errInternal()
	}
	defer up.discard()

	form, apiErr := s.readFileForm(multipart.NewReader(&cappedReader{r: r.Body, remaining: limit + 1}, params["boundary"]), up)
	if apiErr != nil {
		return nil, apiErr
	}
	key := s.store.keyByPublicHex(form.publicKey)
	if key == nil {
		return nil, errNotFound("Key not found")
	}
	rec := &backupRecord{
		BackupID:   newUUID(),
		BackupType: BackupTypeFile,
		KeyID:      key.KeyID,
		CustomerID: key.CustomerID,
		PackageID:  key.PackageID,
		SizeBytes:  up.size,
		SHA256:     up.sha256Hex(),
		Metadata:   form.metadata,
		StoredAt:   s.cfg.Now().UTC().Truncate(time.Millisecond),
	}
	if err := s.store.commitBackup(rec, up); err != nil {
		s.log.Error("sandbox: storing a file backup failed", "error", err)
		return nil, errInternal()
	}
	logAttrs(r, "key_id", rec.KeyID, "backup_id", rec.BackupID, "size_bytes", rec.SizeBytes)
	return &secureFileResponse{
		BackupID:   rec.BackupID,
		BackupType: BackupTypeFile,
		Metadata:   newResponseMetadata(rec.Metadata, rec.StoredAt),
	}, nil
}

// fileForm is a fully read and validated secure/file body.
type fileForm struct {
	publicKey string
	metadata  BackupMetadata
}

// readFileForm reads every part up to the closing boundary, streaming the
// file part into up.
func (s *Server) readFileForm(mr *multipart.Reader, up *upload) (fileForm, *apiError) {
	var form fileForm
	seen := map[string]bool{}
	fe := fieldErrors{}
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return form, s.errMultipart(err)
		}
		name := part.FormName()
		if seen[name] {
			return form, errInvalidField(name, "part appears more than once")
		}
		seen[name] = true
		switch name {
		case partPublicKey:
			data, err := io.ReadAll(io.LimitReader(part, maxPublicKeyHexLen+1))
			if err != nil {
				return form, s.errMultipart(err)
			}
			form.publicKey = string(data)
			if form.publicKey == "" {
				fe.add(partPublicKey, "is required")
			} else {
				checkPublicKeyHex(form.publicKey, partPublicKey, fe)
			}
		case partMetadata:
			data, err := io.ReadAll(io.LimitReader(part, maxMetadataPartBytes+1))
			if err != nil {
				return form, s.errMultipart(err)
			}
			if len(data) > maxMetadataPartBytes {
				fe.add(partMetadata, "must be at most 16 KiB")
				continue
			}
			obj, apiErr := parseJSONObject(data, "metadata part")
			if apiErr != nil {
				fe.add(partMetadata, "must be a JSON object with description, content_type and original_filename strings")
				continue
			}
			form.metadata = readMetadata(obj, fe)
		case partFile:
			if apiErr := checkFilePartType(part.Header.Get("Content-Type")); apiErr != nil {
				return form, apiErr
			}
			if _, err := io.Copy(up, part); err != nil {
				if errors.Is(err, errUploadTooLarge) {
					return form, s.errFileTooLarge()
				}
				return form, s.errMultipart(err)
			}
			if up.size == 0 {
				fe.add(partFile, "is empty")
			}
		case "":
			return form, errInvalid("multipart part without a form-data name")
		default:
			return form, errInvalidField(name, "unexpected part (expected public_key, file and optional metadata)")
		}
	}
	if !seen[partPublicKey] {
		fe.add(partPublicKey, "is required")
	}
	if !seen[partFile] {
		fe.add(partFile, "is required")
	}
	return form, fe.err()
}

// checkFilePartType requires the file part to be application/octet-stream
// (the contract's 415 row).
func checkFilePartType(ct string) *apiError {
	mediaType, _, err := mime.ParseMediaType(ct)
	if err == nil && mediaType == contentTypeOctetStream {
		return nil
	}
	got := ct
	if got == "" {
		got = "none"
	}
	if len(got) > 100 {
		got = got[:100] + "…"
	}
	return &apiError{Status: http.StatusUnsupportedMediaType, Type: errTypeUnsupportedMedia,
		Message: fmt.Sprintf("File part Content-Type must be application/octet-stream (got %q)", got)}
}

// errMultipart classifies a failure reading the body: too large (413) or a
// malformed or cut-off body (400).
func (s *Server) errMultipart(err error) *apiError {
	if errors.Is(err, errBodyTooLarge) {
		return s.errFileTooLarge()
	}
	return errInvalid("Multipart body is malformed or was cut off before its closing boundary; nothing was stored")
}

func (s *Server) errFileTooLarge() *apiError {
	return &apiError{Status: http.StatusRequestEntityTooLarge, Type: errTypeTooLarge,
		Message: fmt.Sprintf("File exceeds the limit of %d bytes", s.cfg.MaxFileBytes)}
}

// cappedReader fails with errBodyTooLarge once more than remaining-1 bytes
// have been read, so an oversized body is rejected without reading it all.
type cappedReader struct {
	r         io.Reader
	remaining int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.remaining <= 0 {
		return 0, errBodyTooLarge
	}
	if int64(len(p)) > c.remaining {
		p = p[:c.remaining]
	}
	n, err := c.r.Read(p)
	c.remaining -= int64(n)
	if c.remaining <= 0 {
		return n, errBodyTooLarge
	}
	return n, err
}
