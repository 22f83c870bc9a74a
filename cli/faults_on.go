//go:build faults

package cli

import (
	"io"

	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/fault"
)

// flagdayFaults returns the flag-day failure-injection points TEEUP_FAULTS
// enables (a test build: the "faults" tag).
func flagdayFaults(io.Writer) (flagday.Faults, error) {
	return fault.FromEnv()
}
