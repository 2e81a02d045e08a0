package sandbox

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"os"
	"path/filepath"
)

// errUploadTooLarge is returned by upload.Write past the size limit.
var errUploadTooLarge = errors.New("upload exceeds the size limit")

// upload stages backup content until the request has been fully parsed and
// validated: a temp file under DataDir/uploads (or a memory buffer), hashed
// and counted as it is written. Nothing is visible until the store commits
// it; discard removes it.
type upload struct {
	limit int64
	size  int64
	hash  hash.Hash
	file  *os.File     // on disk
	buf   bytes.Buffer // in memory
}

// newUpload starts staging content of at most limit bytes.
func (s *store) newUpload(limit int64) (*upload, error) {
	u := &upload{limit: limit, hash: sha256.New()}
	if s.dir == "" {
		return u, nil
	}
	f, err := os.CreateTemp(filepath.Join(s.dir, uploadsDirName), "upload-*")
	if err != nil {
		return nil, err
	}
	if err := f.Chmod(fileMode); err != nil {
		_ = f.Close()
		_ = os.Remove(f.Name())
		return nil, err
	}
	u.file = f
	return u, nil
}

// Write appends p, failing with errUploadTooLarge (and writing nothing of
// p) once the total would pass the limit.
func (u *upload) Write(p []byte) (int, error) {
	if u.size+int64(len(p)) > u.limit {
		return 0, errUploadTooLarge
	}
	var err error
	if u.file != nil {
		_, err = u.file.Write(p)
	} else {
		_, err = u.buf.Write(p)
	}
	if err != nil {
		return 0, err
	}
	u.hash.Write(p)
	u.size += int64(len(p))
	return len(p), nil
}

// sha256Hex is the lowercase hex SHA-256 of everything written.
func (u *upload) sha256Hex() string { return hex.EncodeToString(u.hash.Sum(nil)) }

// takeBytes hands the memory buffer over (memory mode).
func (u *upload) takeBytes() []byte {
	b := bytes.Clone(u.buf.Bytes())
	u.buf.Reset()
	return b
}

// moveTo makes the staged file durable at path (disk mode).
func (u *upload) moveTo(path string) error {
	if err := u.file.Sync(); err != nil {
		return err
	}
	if err := u.file.Close(); err != nil {
		return err
	}
	if err := os.Rename(u.file.Name(), path); err != nil {
		return err
	}
	u.file = nil
	return syncDir(filepath.Dir(path))
}

// discard drops whatever was staged; safe after moveTo and more than once.
func (u *upload) discard() {
	u.buf.Reset()
	if u.file != nil {
		_ = u.file.Close()
		_ = os.Remove(u.file.Name())
		u.file = nil
	}
}
