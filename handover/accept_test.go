package handover

import (
	"errors"
	"testing"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

func TestPeerRules(t *testing.T) {
	m, other := tee.Measurement{1}, tee.Measurement{2}
	id := func(u tee.Measurement, debug bool) tee.Identity { return tee.Identity{UniqueID: u, Debug: debug} }
	signed := &release.EnclaveID{}
	tests := []struct {
		name   string
		peer   Peer
		role   release.Role
		id     tee.Identity
		signed *release.EnclaveID
		want   error // nil: accepted
	}{
		{"node accepts a signed agent", AgentPeer(false), release.RoleAgent, id(other, false), signed, nil},
		{"node refuses a node", AgentPeer(false), release.RoleNode, id(m, false), signed, ErrWrongRole},
		{"node refuses a debug agent", AgentPeer(false), release.RoleAgent, id(other, true), signed, ErrDebugEnclave},
		{"debug node accepts a debug agent", AgentPeer(true), release.RoleAgent, id(other, true), signed, nil},
		{"node refuses an agent without enclave ID", AgentPeer(true), release.RoleAgent, id(other, false), nil, ErrNoEnclaveID},
		{"agent accepts the node", NodePeer(m, false), release.RoleNode, id(m, false), nil, nil},
		{"agent refuses another node", NodePeer(m, false), release.RoleNode, id(other, false), nil, ErrWrongEnclave},
		{"agent refuses an agent", NodePeer(m, false), release.RoleAgent, id(m, false), signed, ErrWrongRole},
		{"agent refuses a debug node", NodePeer(m, false), release.RoleNode, id(m, true), nil, ErrDebugEnclave},
		{"agent allowed debug nodes", NodePeer(m, true), release.RoleNode, id(m, true), nil, nil},
		{"agent accepts its signed successor", SuccessorPeer(m, false), release.RoleAgent, id(m, false), signed, nil},
		{"agent refuses another agent as successor", SuccessorPeer(m, false), release.RoleAgent, id(other, false), signed, ErrWrongEnclave},
		{"agent refuses a node as successor", SuccessorPeer(m, false), release.RoleNode, id(m, false), nil, ErrWrongRole},
		{"agent refuses a debug successor", SuccessorPeer(m, false), release.RoleAgent, id(m, true), signed, ErrDebugEnclave},
		{"successor refuses an unsigned predecessor", SuccessorPeer(m, false), release.RoleAgent, id(m, false), nil, ErrNoEnclaveID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.peer.AcceptProvider(tt.role, tt.id, tt.signed)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("AcceptProvider = %v, want %v", err, tt.want)
			}
			// As a provider's rule the requester's enclave ID is always
			// verified by the protocol: only ErrNoEnclaveID differs.
			want := tt.want
			if want == ErrNoEnclaveID {
				want = nil
			}
			if err := tt.peer.AcceptRequester(tt.role, tt.id); !errors.Is(err, want) || (want == nil) != (err == nil) {
				t.Fatalf("AcceptRequester = %v, want %v", err, want)
			}
		})
	}
}
