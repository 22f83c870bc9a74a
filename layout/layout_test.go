package layout

import (
	"path/filepath"
	"testing"

	"github.com/teeup/teeup/tee"
)

func TestPaths(t *testing.T) {
	m := tee.Measurement{0xab, 0xcd}
	n, a := Node("/d"), Agent("/a")
	r := a.Release("1.2.3")
	tests := []struct{ got, want string }{
		{n.Ledger(), "/d/ledger"},
		{n.Keys(), "/d/keys"},
		{n.SealedKeys(m), "/d/keys/" + m.String() + ".sealed"},
		{n.AdminSocket(), "/d/admin.sock"},
		{n.HandoverSocket(), "/d/handover.sock"},
		{n.Ingress(), "/d/ingress.json"},
		{n.Incoming(), "/d/incoming"},
		{a.Journal(), "/a/journal.json"},
		{a.EnclaveIDCache(), "/a/agent-id.json"},
		{a.Releases(), "/a/releases"},
		{r.Dir(), "/a/releases/1.2.3"},
		{r.Manifest(), "/a/releases/1.2.3/release.json"},
		{r.NodeBinary(), "/a/releases/1.2.3/teeup-node"},
		{SigStruct(r.NodeBinary()), "/a/releases/1.2.3/teeup-node.sig"},
		{r.AgentBinary(), "/a/releases/1.2.3/teeup-agent"},
		{r.DistributeBinary(), "/a/releases/1.2.3/teeup-distribute"},
		{a.HeldKeys("u1"), "/a/keys/u1.sealed"},
		{a.AgentBinary("2.0.0"), "/a/agents/2.0.0/teeup-agent"},
		{a.SuccessorState("s1"), "/a/successor/s1.sealed"},
		{a.SuccessorSocket(), "/a/successor.sock"},
		{a.SuccessorLog(), "/a/successor.log"},
		{a.Snapshot("s"), "/a/snapshots/s"},
		{a.Socket(), "/a/agent.sock"},
		{a.HandoverSocket(), "/a/handover.sock"},
		{a.NodePID(), "/a/node.pid"},
		{a.DistributePID(), "/a/distribute.pid"},
		{a.NodeLog(), "/a/node.log"},
		{AgentOfSocket(a.Socket()).Dir(), "/a"},
	}
	for _, tt := range tests {
		if tt.got != filepath.FromSlash(tt.want) {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

func TestSealedKeysMeasurement(t *testing.T) {
	m := tee.Measurement{1, 2, 3}
	tests := []struct {
		name string
		want tee.Measurement
		ok   bool
	}{
		{filepath.Base(Node("/d").SealedKeys(m)), m, true},
		{m.String(), tee.Measurement{}, false},                 // no suffix
		{"abc.sealed", tee.Measurement{}, false},               // not a measurement
		{m.String() + ".sealed.tmp", tee.Measurement{}, false}, // a temporary file
		{".sealed", tee.Measurement{}, false},
	}
	for _, tt := range tests {
		got, ok := SealedKeysMeasurement(tt.name)
		if ok != tt.ok || got != tt.want {
			t.Errorf("SealedKeysMeasurement(%q) = %v, %v; want %v, %v", tt.name, got, ok, tt.want, tt.ok)
		}
	}
}
