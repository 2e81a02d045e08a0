package upstream

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// PaddingOAEP is the only padding the partner endpoint accepts: RSA-OAEP
// with SHA-256 as OAEP and MGF1 hash.
const PaddingOAEP = "OAEP"

// SecureDataRequest is POST /v1/partner/secure/data.
type SecureDataRequest struct {
	PublicKey  string // hex
	Ciphertext []byte // sent as standard base64 `data`
	Checksum   string // hex SHA-256 of the plaintext
	Metadata   Metadata
}

// SecureDataResponse is the 200 body of POST /v1/partner/secure/data.
type SecureDataResponse struct {
	BackupID   string
	Checksum   string
	DataSize   int64
	BackupType string // "data"
	Metadata   Metadata
	StoredAt   time.Time
}

// secureDataBody is the wire form of SecureDataRequest.
type secureDataBody struct {
	PublicKey   string        `json:"public_key"`
	Data        string        `json:"data"`
	Checksum    string        `json:"checksum"`
	PaddingType string        `json:"padding_type"`
	Metadata    *metadataBody `json:"metadata,omitempty"`
}

// SecureData calls POST /v1/partner/secure/data. The upstream verifies the
// ciphertext against the checksum before storing it, so a 400 may mean
// "does not decrypt" or "checksum mismatch". A timeout or 5xx is never
// retried: the upstream may have stored the backup.
func (c *Client) SecureData(ctx context.Context, req SecureDataRequest) (_ *SecureDataResponse, err error) {
	e := endpointSecureData
	ctx, span := c.tracer.Start(ctx, "upstream.SecureData",
		trace.WithAttributes(attribute.Int("upstream.ciphertext_bytes", len(req.Ciphertext))))
	defer span.End()
	defer func() { recordOutcome(span, err) }()

	switch {
	case req.PublicKey == "":
		return nil, invalidRequest(e, "public_key", "is required")
	case len(req.Ciphertext) == 0:
		return nil, invalidRequest(e, "data", "is required (the ciphertext is empty)")
	case req.Checksum == "":
		return nil, invalidRequest(e, "checksum", "is required (SHA-256 of the plaintext)")
	}
	raw, err := json.Marshal(secureDataBody{
		PublicKey:   req.PublicKey,
		Data:        base64.StdEncoding.EncodeToString(req.Ciphertext),
		Checksum:    req.Checksum,
		PaddingType: PaddingOAEP,
		Metadata:    metadataWire(req.Metadata),
	})
	if err != nil {
		return nil, &Error{Kind: KindInvalid, Endpoint: e.String(), Message: "request not sent: encoding failed", Err: err}
	}
	reply, err := c.doJSON(ctx, e, raw)
	if err != nil {
		return nil, err
	}
	r, md, storedAt, err := decodeBackup(e, reply, "data")
	if err != nil {
		return nil, err
	}
	resp := &SecureDataResponse{
		BackupID:   r.BackupID,
		Checksum:   r.Checksum,
		BackupType: r.BackupType,
		Metadata:   md,
		StoredAt:   storedAt,
	}
	if r.DataSize != nil {
		resp.DataSize = *r.DataSize
	}
	span.SetAttributes(attribute.String("backup_id", resp.BackupID))
	return resp, nil
}
