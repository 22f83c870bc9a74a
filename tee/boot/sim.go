//go:build !ego

package boot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// VerifyBinary measures the enclave binary at path as the simulated
// platform does (MRENCLAVE is the SHA-256 of the file) and checks its
// signature structure (path + ".sig"): it must verify and declare that
// measurement. It returns the identity the binary runs with when loaded
// as a production enclave.
func VerifyBinary(path string) (tee.Identity, error) {
	id, _, err := sim.VerifyBinary(path)
	return id, err
}

// NewQuoteVerifier returns a verifier of simulated quotes chained to the
// simulated root certificate rootPEM.
func NewQuoteVerifier(rootPEM []byte) (tee.QuoteVerifier, error) {
	return sim.NewVerifierFromPEM(rootPEM)
}

// Open starts the program on the simulated platform in opts.PlatformDir.
// It prints the simulation warning first, then loads opts.Binary (or the
// running executable) as the enclave: a binary whose signature structure is
// missing or does not match refuses to start unless opts.Debug.
func Open(opts Options) (*Platform, error) {
	program := programName(opts)
	w := opts.Warnings
	if w == nil {
		w = os.Stderr
	}
	if err := writeSimulationWarning(w, program, opts); err != nil {
		// The warning is the only thing telling an operator that nothing
		// is protected: do not run silently without it.
		return nil, fmt.Errorf("%s: print simulation warning: %w", program, err)
	}
	if opts.PlatformDir == "" {
		return nil, fmt.Errorf("%s: --platform DIR or TEEUP_PLATFORM is required in simulation mode", program)
	}
	binary := opts.Binary
	if binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("%s: find own executable to measure: %w", program, err)
		}
		binary = exe
	}
	p, err := sim.OpenPlatform(opts.PlatformDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", program, err)
	}
	e, err := p.Load(binary, sim.LoadOptions{Debug: opts.Debug})
	if err != nil {
		// A missing binary is not a signature problem; anything else is.
		if !opts.Debug && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%s: refusing to start as an enclave: %w (sign the binary with 'teeup enclave sign', or run it unsigned as a Debug enclave with --enclave-debug)", program, err)
		}
		return nil, fmt.Errorf("%s: %w", program, err)
	}
	return &Platform{Enclave: e, Verifier: p.Verifier(), Simulated: true, Name: NameSimulation}, nil
}

func writeSimulationWarning(w io.Writer, program string, opts Options) error {
	dir := opts.PlatformDir
	if dir == "" {
		dir = "(none given)"
	}
	bar := strings.Repeat("!", 78)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", bar)
	fmt.Fprintf(&b, "!! WARNING: %s is running in SIMULATION MODE (tee/sim).\n", program)
	fmt.Fprintf(&b, "!! There is NO HARDWARE PROTECTION: enclave memory, report keys and seal\n")
	fmt.Fprintf(&b, "!! keys live in ordinary files and process memory.\n")
	fmt.Fprintf(&b, "!! Anyone with access to the platform directory %s\n", dir)
	fmt.Fprintf(&b, "!! can FORGE ATTESTATION (local reports and quotes) and READ SEALED KEYS.\n")
	fmt.Fprintf(&b, "!! Use simulation only for development, tests and demonstrations.\n")
	if opts.Debug {
		fmt.Fprintf(&b, "!! DEBUG: the enclave signature structure is not enforced; this enclave's\n")
		fmt.Fprintf(&b, "!! identity is marked Debug and production policies reject it.\n")
	}
	fmt.Fprintf(&b, "%s\n", bar)
	_, err := io.WriteString(w, b.String())
	return err
}
