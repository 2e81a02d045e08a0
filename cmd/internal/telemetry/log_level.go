package telemetry

import (
	"fmt"
	"log/slog"
	"strings"
)

// ParseLevel reads a --log-level value: debug, info, warn (or warning) or
// error, in any case, optionally with slog's offset syntax ("info+2"). It
// exists so the flag fails at startup with a message that lists the choices.
func ParseLevel(s string) (slog.Level, error) {
	text := strings.TrimSpace(s)
	if strings.EqualFold(text, "warning") {
		return slog.LevelWarn, nil
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(text)); err != nil {
		return 0, fmt.Errorf("log level %q is not valid; use debug, info, warn or error", s)
	}
	return level, nil
}
