package service

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Spool file layout: one file per SecureFile upload in flight, in a
// directory only recoveryd's user may enter.
const (
	// spoolDirMode keeps the spooled ciphertext to recoveryd's user.
	spoolDirMode = 0o700
	// spoolPrefix and spoolSuffix name the spool files (os.CreateTemp,
	// which creates them with mode 0600); OpenSpool removes only these.
	spoolPrefix = "upload-"
	spoolSuffix = ".spool"
)

// Spool keeps the bytes of each SecureFile upload in a temporary file while
// they are forwarded upstream, so that a failed upload can be re-sent
// without the caller sending it again. A spool file holds one upload (at
// most the file size limit), is created at its first chunk and removed
// when the call ends, successful or not. It is safe for concurrent use.
type Spool struct {
	dir string
}

// OpenSpool prepares dir (created with mode 0700 if missing) and removes
// the spool files a previous process left behind (a crash, a kill -9):
// their calls ended with that process.
func OpenSpool(dir string) (*Spool, error) {
	if err := os.MkdirAll(dir, spoolDirMode); err != nil {
		return nil, fmt.Errorf("creating the spool directory: %w", err)
	}
	// NOTE: MkdirAll keeps an existing directory's mode.
	if err := os.Chmod(dir, spoolDirMode); err != nil {
		return nil, fmt.Errorf("restricting the spool directory to mode 0700: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("reading the spool directory: %w", err)
	}
	var errs []error
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), spoolPrefix) && strings.HasSuffix(e.Name(), spoolSuffix) {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("removing leftover spool files: %w", err)
	}
	return &Spool{dir: dir}, nil
}

// Dir is the spool's directory.
func (s *Spool) Dir() string { return s.dir }

// create opens a new, empty spool file.
func (s *Spool) create() (*spoolFile, error) {
	f, err := os.CreateTemp(s.dir, spoolPrefix+"*"+spoolSuffix)
	if err != nil {
		return nil, err
	}
	return &spoolFile{f: f}, nil
}

// spoolFile is one upload's spool: written once, front to back, then read
// as many times as the upload is re-sent.
type spoolFile struct {
	f    *os.File
	size int64
}

func (sf *spoolFile) Write(p []byte) (int, error) {
	n, err := sf.f.Write(p)
	sf.size += int64(n)
	return n, err
}

// reader reads the whole spool from its start, in small reads, never into
// memory at once; ReadAt makes readers independent of each other.
func (sf *spoolFile) reader() (io.ReadCloser, error) {
	return io.NopCloser(io.NewSectionReader(sf.f, 0, sf.size)), nil
}

// remove closes and deletes the spool file.
func (sf *spoolFile) remove() error {
	return errors.Join(sf.f.Close(), os.Remove(sf.f.Name()))
}
