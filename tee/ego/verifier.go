//go:build ego

package ego

import (
	"errors"
	"fmt"

	"github.com/edgelesssys/ego/attestation"
	"github.com/edgelesssys/ego/attestation/tcbstatus"
	"github.com/edgelesssys/ego/enclave"

	"github.com/teeup/teeup/tee"
)

// VerifierOptions configures a Verifier.
type VerifierOptions struct {
	// AllowTCBLevelInvalid accepts a quote whose signature chain verifies
	// but whose platform TCB level is not up to date (EGo's
	// attestation.ErrTCBLevelInvalid: out of date, revoked, configuration or
	// software hardening needed). By default such a quote is refused: the
	// platform may be vulnerable to known attacks on SGX.
	AllowTCBLevelInvalid bool
}

// Verifier verifies SGX quotes (EGo remote reports) against Intel's
// attestation root through EGo. It implements tee.QuoteVerifier. It calls
// enclave.VerifyRemoteReport and therefore works inside an EGo enclave;
// processes outside an enclave need EGo's eclient package instead.
type Verifier struct {
	opts   VerifierOptions
	verify func([]byte) (attestation.Report, error)
}

var _ tee.QuoteVerifier = (*Verifier)(nil)

// NewVerifier returns a verifier using EGo's remote report verification.
func NewVerifier(opts VerifierOptions) *Verifier {
	return &Verifier{opts: opts, verify: enclave.VerifyRemoteReport}
}

// VerifyQuote implements tee.QuoteVerifier. The caller checks the returned
// identity against its policy (MRENCLAVE set, Debug).
func (v *Verifier) VerifyQuote(quote []byte) (tee.Report, error) {
	if len(quote) == 0 {
		return tee.Report{}, errors.New("ego: verify quote: empty quote")
	}
	r, err := v.verify(quote)
	switch {
	case errors.Is(err, attestation.ErrTCBLevelInvalid):
		if !v.opts.AllowTCBLevelInvalid {
			return tee.Report{}, fmt.Errorf("ego: verify quote: platform TCB level is %s: %s (%w)", r.TCBStatus, tcbstatus.Explain(r.TCBStatus), err)
		}
	case err != nil:
		return tee.Report{}, fmt.Errorf("ego: verify quote: %w", err)
	}
	out, err := reportFromEGo(r, tee.Measurement{})
	if err != nil {
		return tee.Report{}, fmt.Errorf("ego: verify quote: %w", err)
	}
	return out, nil
}
