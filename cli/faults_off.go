//go:build !faults

package cli

import (
	"fmt"
	"io"
	"os"

	"github.com/teeup/teeup/flagday"
)

// flagdayFaults returns no failure injection: this build has none. A
// TEEUP_FAULTS setting is reported and ignored.
func flagdayFaults(stderr io.Writer) (flagday.Faults, error) {
	if os.Getenv("TEEUP_FAULTS") != "" {
		fmt.Fprintln(stderr, "teeup: TEEUP_FAULTS is set but this build has no fault injection (build with -tags faults); ignoring it")
	}
	return nil, nil
}
