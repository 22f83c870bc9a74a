// Package boot is how an enclave program (teeup-node, teeup-agent) obtains
// its platform at start-up.
//
// The default build runs on tee/sim, the software simulation: Open opens the
// platform directory, measures the program's own binary, refuses to start
// unless the binary's signature structure (BINARY.sig) matches it (or Debug
// is set), and prints a loud warning that simulation offers no hardware
// protection. A build with the "ego" tag runs on real SGX through tee/ego and
// refuses to start outside an EGo enclave.
//
// Open never exits the process; it returns an error for the program's main
// to report.
//
// The platform chosen at build time also measures enclave binaries on disk
// (VerifyBinary) and verifies other enclaves' quotes (NewQuoteVerifier), so
// that releases, the agent and clients do not depend on tee/sim directly.
package boot

import (
	"errors"
	"io"

	"github.com/teeup/teeup/tee"
)

// ErrUnsupported is wrapped by the errors of operations this build's
// platform cannot perform.
var ErrUnsupported = errors.New("not supported on this platform")

// Options configures Open.
type Options struct {
	// Program is the program name for messages, e.g. "teeup-node".
	Program string
	// PlatformDir is the simulated platform directory. Required in
	// simulation; ignored under EGo.
	PlatformDir string
	// Debug runs without a valid signature structure; the identity is
	// marked Debug and production policies reject it. Under EGo it allows
	// running an enclave signed with debug enabled.
	Debug bool
	// Binary is the executable to measure; "" means os.Executable().
	// Ignored under EGo, where the hardware measures the enclave.
	Binary string
	// Warnings receives the simulation and debug warnings; nil means
	// os.Stderr.
	Warnings io.Writer
}

// Platform is what a started enclave program holds.
type Platform struct {
	// Enclave is the program's handle on its platform.
	Enclave tee.Enclave
	// Verifier verifies quotes from other enclaves of the same kind of
	// platform (pinned to the simulated root, or Intel's via EGo).
	Verifier tee.QuoteVerifier
	// Simulated is true on tee/sim, which offers no hardware protection.
	Simulated bool
	// Name names the platform for logs: "simulation (tee/sim)" or
	// "SGX (EGo)".
	Name string
}

// Platform names.
const (
	NameSimulation = "simulation (tee/sim)"
	NameEGo        = "SGX (EGo)"
)

func programName(opts Options) string {
	if opts.Program != "" {
		return opts.Program
	}
	return "enclave program"
}
