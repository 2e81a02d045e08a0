package telemetry

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

const (
	envTracesSampler    = "OTEL_TRACES_SAMPLER"
	envTracesSamplerArg = "OTEL_TRACES_SAMPLER_ARG"
)

// validateSamplerEnv rejects sampler settings the SDK would not honour. The
// SDK itself builds the sampler from these variables, but on a value it does
// not know it only reports to the OTel error handler and falls back to
// sampling everything, which an operator who asked for 1% would not notice.
func validateSamplerEnv() error {
	name := strings.ToLower(strings.TrimSpace(os.Getenv(envTracesSampler)))
	arg := strings.TrimSpace(os.Getenv(envTracesSamplerArg))
	switch name {
	case "", "always_on", "always_off", "parentbased_always_on", "parentbased_always_off":
		return nil
	case "traceidratio", "parentbased_traceidratio":
		if arg == "" {
			return nil // the SDK's default ratio is 1.0
		}
		ratio, err := strconv.ParseFloat(arg, 64)
		if err != nil || ratio < 0 || ratio > 1 {
			return fmt.Errorf("telemetry: %s=%q is not a ratio between 0 and 1 (for %s=%s)", envTracesSamplerArg, arg, envTracesSampler, name)
		}
		return nil
	default:
		return fmt.Errorf("telemetry: %s=%q is not supported; use always_on, always_off, traceidratio, "+
			"parentbased_always_on, parentbased_always_off or parentbased_traceidratio", envTracesSampler, name)
	}
}
