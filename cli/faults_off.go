//go:build !faults

package cli

import (
	"io"

	"github.com/teeup/teeup/flagday"
	"github.com/teeup/teeup/internal/buildinfo"
)

// flagdayFaults returns no failure injection: this build has none. A
// TEEUP_FAULTS setting is reported and ignored.
func flagdayFaults(stderr io.Writer) (flagday.Faults, error) {
	buildinfo.WarnFaultsIgnored(stderr, "teeup")
	return nil, nil
}
