package handover

import (
	"errors"
	"fmt"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Reasons a Peer rule refuses the other side of an exchange, to be matched
// with errors.Is.
var (
	// ErrWrongRole: keys move only between a node and its upgrade agent.
	ErrWrongRole = errors.New("keys move only between a node and its upgrade agent")
	// ErrWrongEnclave: the other side is not the exact node enclave the
	// exchange is for.
	ErrWrongEnclave = errors.New("not the node enclave this exchange is for")
	// ErrDebugEnclave: the other side is a debug enclave, whose memory
	// the host can read.
	ErrDebugEnclave = errors.New("debug enclaves are refused")
	// ErrNoEnclaveID: an agent presented no network-signed enclave ID.
	ErrNoEnclaveID = errors.New("no network-signed enclave ID")
)

// Peer is who may be on the other side of a key handover: teeup's
// acceptance rules for both legs, written once and used by the node, the
// agent and the handover benchmark as a Provider's AcceptRequester and a
// Requester's AcceptProvider. They run after the protocol has verified the
// local report (same platform, made for this enclave, fresh, bound to the
// exchange) and any enclave ID under the Key Management Group for the
// report's MRENCLAVE and role.
type Peer struct {
	// Role is the role the other side must have.
	Role release.Role
	// MREnclave, when not zero, is the exact measurement it must have;
	// zero accepts any measurement the Key Management Group signed for
	// Role.
	MREnclave tee.Measurement
	// AllowDebug accepts a debug enclave (development only).
	AllowDebug bool
}

// AgentPeer is the node's rule for both of its legs: it hands its keys to,
// and takes keys from, only an upgrade agent whose enclave ID the Key
// Management Group signed; a debug agent only when allowDebug.
func AgentPeer(allowDebug bool) Peer {
	return Peer{Role: release.RoleAgent, AllowDebug: allowDebug}
}

// NodePeer is the agent's rule for both of its legs: it takes the keys from
// the node enclave it supervises and hands them to the release's signed
// node enclave, each exactly m; a debug node only when allowDebug.
func NodePeer(m tee.Measurement, allowDebug bool) Peer {
	return Peer{Role: release.RoleNode, MREnclave: m, AllowDebug: allowDebug}
}

// SuccessorPeer is an agent's rule for its own upgrade, on both sides of
// it: the old agent hands its held state only to, and the new agent takes
// it only from, an upgrade agent whose enclave ID the Key Management Group
// signed with exactly measurement m (the other agent's, from the signed
// release); a debug agent only when allowDebug.
func SuccessorPeer(m tee.Measurement, allowDebug bool) Peer {
	return Peer{Role: release.RoleAgent, MREnclave: m, AllowDebug: allowDebug}
}

// AcceptRequester is the rule as a ProviderConfig.AcceptRequester (the
// protocol has already verified the requester's enclave ID).
func (p Peer) AcceptRequester(role release.Role, id tee.Identity) error {
	return p.check(role, id, true)
}

// AcceptProvider is the rule as a RequesterConfig.AcceptProvider: an agent
// provider must also have presented a network-signed enclave ID.
func (p Peer) AcceptProvider(role release.Role, id tee.Identity, providerID *release.EnclaveID) error {
	return p.check(role, id, providerID != nil)
}

func (p Peer) check(role release.Role, id tee.Identity, signed bool) error {
	if role != p.Role {
		return fmt.Errorf("a %s, not the %s: %w", role, p.Role, ErrWrongRole)
	}
	if !p.MREnclave.IsZero() && id.UniqueID != p.MREnclave {
		return fmt.Errorf("%s MRENCLAVE %s, expected %s: %w", role, id.UniqueID.Short(), p.MREnclave.Short(), ErrWrongEnclave)
	}
	if id.Debug && !p.AllowDebug {
		return fmt.Errorf("%s %s is a debug enclave: %w", role, id.UniqueID.Short(), ErrDebugEnclave)
	}
	if role == release.RoleAgent && !signed {
		return fmt.Errorf("the %s %s presented %w", role, id.UniqueID.Short(), ErrNoEnclaveID)
	}
	return nil
}
