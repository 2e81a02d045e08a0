package upstream

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Metadata is a backup's descriptive metadata.
type Metadata struct {
	Description      string
	ContentType      string
	OriginalFilename string
}

// IsZero reports whether m carries nothing, in which case it is not sent.
func (m Metadata) IsZero() bool { return m == Metadata{} }

// metadataBody is the wire form of Metadata; empty fields are omitted.
type metadataBody struct {
	Description      string `json:"description,omitempty"`
	ContentType      string `json:"content_type,omitempty"`
	OriginalFilename string `json:"original_filename,omitempty"`
}

func metadataWire(m Metadata) *metadataBody {
	if m.IsZero() {
		return nil
	}
	return &metadataBody{Description: m.Description, ContentType: m.ContentType, OriginalFilename: m.OriginalFilename}
}

// storedMetadata is the response's "combined metadata": what was sent plus
// stored_at. Unknown members are ignored.
type storedMetadata struct {
	Description      string `json:"description"`
	ContentType      string `json:"content_type"`
	OriginalFilename string `json:"original_filename"`
	StoredAt         string `json:"stored_at"`
}

// parse splits the response metadata into Metadata and the stored_at time.
func (s *storedMetadata) parse() (Metadata, time.Time, error) {
	m := Metadata{Description: s.Description, ContentType: s.ContentType, OriginalFilename: s.OriginalFilename}
	if s.StoredAt == "" {
		return m, time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s.StoredAt)
	if err != nil {
		return m, time.Time{}, fmt.Errorf("metadata.stored_at is not RFC 3339")
	}
	return m, t, nil
}

// backupReply is the common part of the secure/data and secure/file 200
// bodies.
type backupReply struct {
	BackupID   string          `json:"backup_id"`
	BackupType string          `json:"backup_type"`
	Checksum   string          `json:"checksum"`
	DataSize   *int64          `json:"data_size"`
	Metadata   *storedMetadata `json:"metadata"`
}

// decodeBackup parses a store response, refusing one without a usable
// backup_id or of the wrong backup_type.
func decodeBackup(e endpoint, raw []byte, wantType string) (*backupReply, Metadata, time.Time, error) {
	var r backupReply
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, Metadata{}, time.Time{}, protocolError(e, 200, "response is not the backup JSON object: %v", err)
	}
	switch {
	case r.BackupID == "":
		return nil, Metadata{}, time.Time{}, protocolError(e, 200, "response has no backup_id")
	case len(r.BackupID) > maxKeyIDLen || strings.ContainsFunc(r.BackupID, notPrintableASCII):
		return nil, Metadata{}, time.Time{}, protocolError(e, 200, "response backup_id is not a short printable identifier")
	case r.BackupType != "" && r.BackupType != wantType:
		return nil, Metadata{}, time.Time{}, protocolError(e, 200, "response backup_type %q, want %q", r.BackupType, wantType)
	}
	var (
		md       Metadata
		storedAt time.Time
	)
	if r.Metadata != nil {
		var err error
		if md, storedAt, err = r.Metadata.parse(); err != nil {
			return nil, Metadata{}, time.Time{}, protocolError(e, 200, "response %v", err)
		}
	}
	if r.BackupType == "" {
		r.BackupType = wantType
	}
	return &r, md, storedAt, nil
}
