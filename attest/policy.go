// Package attest decides which enclaves a teeup component trusts and
// carries attestation over TLS.
//
// A Policy checks a verified enclave identity. Two kinds exist: an exact
// policy (a set of MRENCLAVE values) and a signer policy (MRSIGNER, product
// ID and a minimum security version). Consensus peering accepts only exact
// policies: see ForPeering.
//
// Attested TLS binds a per-process TLS key to a quote: the certificate
// carries, in an extension, a quote whose report data holds the hash of the
// certificate's public key. Verifying the quote against a pinned root and
// the identity against a policy authenticates the peer as that enclave.
package attest

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/teeup/teeup/tee"
)

// Policy decides whether an enclave identity is acceptable.
type Policy interface {
	// Check returns nil if id is acceptable, or an error saying why not.
	Check(id tee.Identity) error
	// String describes the policy for logs and errors.
	String() string
}

// Errors returned by policies; test with errors.Is.
var (
	// ErrMeasurementNotAllowed means the presented MRENCLAVE is not in an
	// exact policy's set.
	ErrMeasurementNotAllowed = errors.New("enclave measurement not allowed")
	// ErrSignerNotAllowed means the signer, product or SVN does not satisfy
	// a signer policy.
	ErrSignerNotAllowed = errors.New("enclave signer, product or security version not allowed")
	// ErrDebugEnclave means a debug enclave was presented to a policy that
	// does not allow debug enclaves.
	ErrDebugEnclave = errors.New("debug enclave not allowed")
	// ErrSignerPolicyForPeering means a signer policy was asked for
	// consensus peering.
	ErrSignerPolicyForPeering = errors.New("a signer-based policy must not be used for consensus peering")
)

// ExactPolicy accepts enclaves whose MRENCLAVE is one of a fixed set.
type ExactPolicy struct {
	measurements []tee.Measurement
	allowDebug   bool
}

// Exact returns a policy accepting exactly the given measurements. Debug
// enclaves are rejected; see AllowingDebug.
func Exact(ms ...tee.Measurement) *ExactPolicy {
	set := slices.Clone(ms)
	slices.SortFunc(set, func(a, b tee.Measurement) int { return strings.Compare(a.String(), b.String()) })
	set = slices.Compact(set)
	return &ExactPolicy{measurements: set}
}

// AllowingDebug returns a copy of the policy that also accepts debug
// enclaves. Only for development: a debug enclave's memory is readable by
// its host.
func (p *ExactPolicy) AllowingDebug() *ExactPolicy {
	return &ExactPolicy{measurements: p.measurements, allowDebug: true}
}

// Measurements returns the accepted measurements.
func (p *ExactPolicy) Measurements() []tee.Measurement { return slices.Clone(p.measurements) }

// Check implements Policy.
func (p *ExactPolicy) Check(id tee.Identity) error {
	if id.Debug && !p.allowDebug {
		return fmt.Errorf("%w: MRENCLAVE %s is a debug enclave (its host can read its memory)", ErrDebugEnclave, id.UniqueID)
	}
	if slices.Contains(p.measurements, id.UniqueID) {
		return nil
	}
	return fmt.Errorf("%w: presented MRENCLAVE %s, expected %s", ErrMeasurementNotAllowed, id.UniqueID, p.expected())
}

func (p *ExactPolicy) expected() string {
	switch len(p.measurements) {
	case 0:
		return "none (empty policy)"
	case 1:
		return p.measurements[0].String()
	}
	parts := make([]string, len(p.measurements))
	for i, m := range p.measurements {
		parts[i] = m.String()
	}
	return "one of " + strings.Join(parts, ", ")
}

// String implements Policy.
func (p *ExactPolicy) String() string {
	s := "exact MRENCLAVE " + p.expected()
	if p.allowDebug {
		s += " (debug allowed)"
	}
	return s
}

// SignerPolicy accepts enclaves by signer, product and minimum SVN. It suits
// clients that follow a vendor's updates; it must never gate consensus
// peering (see ForPeering).
type SignerPolicy struct {
	// Signer is the required MRSIGNER.
	Signer tee.Measurement
	// ProductID is the required product ID.
	ProductID uint16
	// MinSVN is the lowest acceptable security version.
	MinSVN uint16
	// AllowDebug accepts debug enclaves; only for development.
	AllowDebug bool
}

// Check implements Policy.
func (p *SignerPolicy) Check(id tee.Identity) error {
	if id.Debug && !p.AllowDebug {
		return fmt.Errorf("%w: MRENCLAVE %s is a debug enclave (its host can read its memory)", ErrDebugEnclave, id.UniqueID)
	}
	if id.SignerID != p.Signer {
		return fmt.Errorf("%w: presented MRSIGNER %s, expected %s", ErrSignerNotAllowed, id.SignerID, p.Signer)
	}
	if id.ProductID != p.ProductID {
		return fmt.Errorf("%w: presented product ID %d, expected %d", ErrSignerNotAllowed, id.ProductID, p.ProductID)
	}
	if id.SecurityVersion < p.MinSVN {
		return fmt.Errorf("%w: presented SVN %d, expected at least %d", ErrSignerNotAllowed, id.SecurityVersion, p.MinSVN)
	}
	return nil
}

// String implements Policy.
func (p *SignerPolicy) String() string {
	s := fmt.Sprintf("signer MRSIGNER %s product %d SVN>=%d", p.Signer, p.ProductID, p.MinSVN)
	if p.AllowDebug {
		s += " (debug allowed)"
	}
	return s
}

// ForPeering checks that p may gate consensus peering and returns it.
//
// Consensus peers must run identical code, so only an exact MRENCLAVE policy
// with at least one measurement is accepted. A signer-based policy is
// refused: if peering checked only MRSIGNER, product ID and SVN, whoever
// holds the signing key could be forced to sign a malicious enclave that
// leaks all inbound user traffic, and any existing member could attach it to
// the network.
func ForPeering(p Policy) (*ExactPolicy, error) {
	switch p := p.(type) {
	case *ExactPolicy:
		if len(p.measurements) == 0 {
			return nil, errors.New("peering policy: no MRENCLAVE given; peers must present an identical measurement")
		}
		return p, nil
	case *SignerPolicy:
		return nil, fmt.Errorf("peering policy: %w: if peers were accepted by MRSIGNER, product ID and SVN alone, "+
			"the key holders could be forced to sign a malicious enclave that leaks all inbound user traffic, "+
			"and any existing member could attach it to the consensus network; peer only with an identical MRENCLAVE", ErrSignerPolicyForPeering)
	default:
		return nil, fmt.Errorf("peering policy: %T is not an exact MRENCLAVE policy", p)
	}
}
