//go:build !faults

package node

import (
	"io"

	"github.com/teeup/teeup/internal/buildinfo"
)

// faultsFromEnv returns no failure injection: this build has none. A
// TEEUP_FAULTS setting is reported and ignored.
func faultsFromEnv(stderr io.Writer) (Faults, error) {
	buildinfo.WarnFaultsIgnored(stderr, "teeup-node")
	return noFaults{}, nil
}
