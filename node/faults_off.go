//go:build !faults

package node

import (
	"fmt"
	"io"
	"os"
)

// faultsFromEnv returns no failure injection: this build has none. A
// TEEUP_FAULTS setting is reported and ignored.
func faultsFromEnv(stderr io.Writer) (Faults, error) {
	if os.Getenv("TEEUP_FAULTS") != "" {
		fmt.Fprintln(stderr, "teeup-node: TEEUP_FAULTS is set but this build has no fault injection (build with -tags faults); ignoring it")
	}
	return noFaults{}, nil
}
