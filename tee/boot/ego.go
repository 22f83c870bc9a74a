//go:build ego

package boot

import (
	"fmt"
	"io"
	"os"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/ego"
)

// VerifyBinary is not available under EGo: an SGX enclave's MRENCLAVE is
// measured over the signed enclave image by the hardware ("ego uniqueid"
// prints it), not computed from the file here, so releases are checked
// against the values in their manifest by the platform that loads them.
func VerifyBinary(path string) (tee.Identity, error) {
	return tee.Identity{}, fmt.Errorf("measure enclave binary %s: %w (EGo measures enclaves in hardware; use 'ego uniqueid')", path, ErrUnsupported)
}

// NewQuoteVerifier returns EGo's verifier of SGX quotes, chained to
// Intel's attestation root. rootPEM, the simulation's pinned root, is not
// used: SGX quotes chain to Intel's root, which EGo holds.
func NewQuoteVerifier(rootPEM []byte) (tee.QuoteVerifier, error) {
	return ego.NewVerifier(ego.VerifierOptions{}), nil
}

// Open starts the program on real SGX through EGo. It refuses to start
// unless the process runs inside an EGo enclave (outside one, EGo's seal
// calls "succeed" with an all-zero key), and refuses a debug enclave unless
// opts.Debug. opts.PlatformDir and opts.Binary are ignored: the hardware
// measures the enclave.
func Open(opts Options) (*Platform, error) {
	program := programName(opts)
	w := opts.Warnings
	if w == nil {
		w = os.Stderr
	}
	e, err := ego.New()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", program, err)
	}
	id := e.Identity()
	if id.Debug {
		if !opts.Debug {
			return nil, fmt.Errorf("%s: this is a DEBUG SGX enclave (signed with \"debug\": true in enclave.json): the host can read its memory; sign it without debug, or pass --enclave-debug to run it anyway", program)
		}
		if _, err := io.WriteString(w, "!! DEBUG: "+program+" runs in a DEBUG SGX enclave: the host can read its memory;\n!! its identity is marked Debug and production policies reject it.\n"); err != nil {
			return nil, fmt.Errorf("%s: print debug warning: %w", program, err)
		}
	}
	return &Platform{
		Enclave:   e,
		Verifier:  ego.NewVerifier(ego.VerifierOptions{}),
		Simulated: false,
		Name:      NameEGo,
	}, nil
}
