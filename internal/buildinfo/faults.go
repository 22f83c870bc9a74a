package buildinfo

import (
	"fmt"
	"io"
	"os"
)

// FaultsEnvVar names the environment variable that enables failure
// injection in a build with the "faults" tag (see internal/fault).
const FaultsEnvVar = "TEEUP_FAULTS"

// WarnFaultsIgnored tells w that program ignores FaultsEnvVar when it is
// set: a build without the "faults" tag has no failure injection, so a
// test that sets it against such a binary learns why nothing fails.
func WarnFaultsIgnored(w io.Writer, program string) {
	if os.Getenv(FaultsEnvVar) != "" {
		fmt.Fprintf(w, "%s: %s is set but this build has no fault injection (build with -tags faults); ignoring it\n", program, FaultsEnvVar)
	}
}
