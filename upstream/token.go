package upstream

import (
	"fmt"
	"io"
	"os"
	"strings"
)

// maxTokenFile bounds how much of a token file is read: a JWT or API key is
// a few KiB at most, so anything larger is the wrong file.
const maxTokenFile = 64 << 10

// LoadToken reads a bearer token file (trimmed; empty or multi-line is an error).
// Surrounding whitespace, such as the trailing newline editors add, is
// trimmed. Errors name the file but never its content, and nothing is logged.
func LoadToken(path string) (string, error) {
	f, err := os.Open(path) //nolint:gosec // G304: the path is the operator's configuration, not a caller's input
	if err != nil {
		return "", fmt.Errorf("reading upstream token file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("reading upstream token file %s: %w", path, err)
	}
	if len(data) > maxTokenFile {
		return "", fmt.Errorf("upstream token file %s is larger than %d bytes: is it the right file?", path, maxTokenFile)
	}
	token := strings.TrimSpace(string(data))
	if token == "" {
		return "", fmt.Errorf("upstream token file %s is empty", path)
	}
	if strings.ContainsAny(token, "\r\n") {
		return "", fmt.Errorf("upstream token file %s holds more than one line: it must hold the token alone", path)
	}
	if err := validateToken(token); err != nil {
		return "", fmt.Errorf("upstream token file %s: %w", path, err)
	}
	return token, nil
}
