package auth

import (
	"errors"
	"fmt"
	"os"
)

// CheckSecretFile applies the callers file's permission rule to another
// secret file (recoveryd's --upstream-token-file and --tls-key): path,
// symbolic links followed (a Kubernetes secret volume's files are links),
// must be a regular file that neither others nor its group may access,
// except that its group may read it when root owns it (see privateEnough).
// The error names the file and what to change, never its content.
func CheckSecretFile(path string) error {
	// NOTE: Stat of the opened file, not of the path: the permissions
	// checked are those of the file that would be read.
	f, err := os.Open(path) //nolint:gosec // the path is operator configuration.
	if err != nil {
		return fmt.Errorf("%s cannot be opened: %w", path, unwrapPathError(err))
	}
	defer f.Close() // read-only: a failed close loses nothing
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("%s cannot be read: %w", path, unwrapPathError(err))
	}
	if !info.Mode().IsRegular() {
		return errors.New(path + " is not a regular file")
	}
	if !privateEnough(info) {
		return fmt.Errorf("%s has permissions %04o, which let group or others access a secret: make it readable by the service user only (chmod 600), or by its group only when root owns it (chmod 440, as a Kubernetes secret volume with an fsGroup mounts it)", path, info.Mode().Perm())
	}
	return nil
}
