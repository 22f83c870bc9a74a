//go:build faults

package agent

import (
	"io"

	"github.com/teeup/teeup/internal/fault"
)

// faultsFromEnv returns the failure-injection points TEEUP_FAULTS enables
// (a test build: the "faults" tag).
func faultsFromEnv(io.Writer) (Faults, error) {
	return fault.FromEnv()
}
