package release

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/tee"
)

func TestEnclaveIDVerify(t *testing.T) {
	keys := testKeys(3)
	kmg := groupOf(keys, 2)
	sr := signedRelease(t, keys[0], keys[1])
	node, agent := sr.Manifest.Node.MREnclave, sr.Manifest.Agent.MREnclave
	relabeled := sr.NodeID // the node's signed ID presented as an agent's
	relabeled.Role = RoleAgent
	cases := []struct {
		name    string
		id      EnclaveID
		network string
		role    Role
		m       tee.Measurement
		wantIs  error
		want    string // "" means it must verify
	}{
		{name: "node", id: sr.NodeID, network: "testnet-1", role: RoleNode, m: node},
		{name: "agent", id: sr.AgentID, network: "testnet-1", role: RoleAgent, m: agent},
		{name: "other network", id: sr.NodeID, network: "othernet", role: RoleNode, m: node, want: `it is for network "testnet-1", not "othernet"`},
		{name: "other role", id: sr.NodeID, network: "testnet-1", role: RoleAgent, m: node, want: `it is for role "node", not "agent"`},
		{name: "other mrenclave", id: sr.NodeID, network: "testnet-1", role: RoleNode, m: agent, want: "it is for MRENCLAVE " + node.String() + ", not " + agent.String()},
		{name: "node id relabeled as agent", id: relabeled, network: "testnet-1", role: RoleAgent, m: node, wantIs: ErrBadSignature, want: "does not verify"},
		{name: "unknown role", id: EnclaveID{NetworkID: "testnet-1", Role: "admin", MREnclave: node}, network: "testnet-1", role: "admin", m: node, want: `role "admin" is neither`},
		{name: "too few signatures", id: EnclaveID{NetworkID: "testnet-1", Role: RoleNode, MREnclave: node, Signatures: sr.NodeID.Signatures[:1]},
			network: "testnet-1", role: RoleNode, m: node, want: "1 of 2 required signatures"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.id.Verify(kmg, tc.network, tc.role, tc.m)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Verify = %v, want error containing %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("Verify = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}

// TestEnclaveIDSigningBytesGolden pins the signed encoding of an enclave ID.
func TestEnclaveIDSigningBytesGolden(t *testing.T) {
	m := measurementOf("node")
	id := EnclaveID{NetworkID: "testnet-1", Role: RoleNode, MREnclave: m}
	want := "0000001a" + hexOf([]byte("teeup signed enclave id v1")) +
		"00000009" + hexOf([]byte("testnet-1")) +
		"00000004" + hexOf([]byte("node")) +
		m.String()
	if got := hexOf(id.SigningBytes()); got != want {
		t.Fatalf("signing bytes changed:\n got %s\nwant %s", got, want)
	}
}

func TestEnclaveIDBinaryRoundTrip(t *testing.T) {
	sr := signedRelease(t, testKeys(3)...)
	for _, id := range []EnclaveID{sr.NodeID, sr.AgentID, {NetworkID: "n", Role: RoleNode, Signatures: []Signature{}}} {
		b, err := id.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var got EnclaveID
		if err := got.UnmarshalBinary(b); err != nil {
			t.Fatalf("UnmarshalBinary: %v", err)
		}
		if !reflect.DeepEqual(got, id) {
			t.Fatalf("round trip: got %+v, want %+v", got, id)
		}
	}
	var got EnclaveID
	b, _ := sr.NodeID.MarshalBinary()
	if err := got.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := got.Verify(groupOf(testKeys(3), 3), "testnet-1", RoleNode, sr.Manifest.Node.MREnclave); err != nil {
		t.Fatalf("Verify after a binary round trip: %v", err)
	}
}

func TestEnclaveIDMarshalRejects(t *testing.T) {
	sr := signedRelease(t, testKeys(1)...)
	cases := []struct {
		name string
		edit func(id *EnclaveID)
		want string
	}{
		{"bad key", func(id *EnclaveID) { id.Signatures[0].Key = "x" }, "signature 0"},
		{"bad signature", func(id *EnclaveID) { id.Signatures[0].Sig = "abcd" }, "2 bytes, want 64"},
		{"long network", func(id *EnclaveID) { id.NetworkID = strings.Repeat("n", 65) }, "too long"},
		{"too many signatures", func(id *EnclaveID) { id.Signatures = make([]Signature, MaxSignatures+1) }, "at most 256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := sr.NodeID
			id.Signatures = append([]Signature(nil), id.Signatures...)
			tc.edit(&id)
			if _, err := id.MarshalBinary(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("MarshalBinary = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestEnclaveIDUnmarshalRejects(t *testing.T) {
	sr := signedRelease(t, testKeys(2)...)
	good, err := sr.NodeID.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	longNet := wire.NewEncoder(0)
	longNet.String(strings.Repeat("n", 65))
	hugeCount := wire.NewEncoder(0)
	hugeCount.String("testnet-1")
	hugeCount.String("node")
	hugeCount.Fixed(make([]byte, 32))
	hugeCount.U32(MaxSignatures + 1)
	cases := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "truncated"},
		{"truncated in mrenclave", good[:4+9+4+4+10], "mrenclave"},
		{"truncated in a signature", good[:len(good)-1], "truncated"},
		{"trailing byte", append(append([]byte(nil), good...), 0), "1 trailing bytes"},
		{"network id too long", longNet.Bytes(), "exceeds the maximum 64"},
		{"too many signatures", hugeCount.Bytes(), "count 257 exceeds the maximum 256"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := EnclaveID{NetworkID: "untouched"}
			err := id.UnmarshalBinary(tc.data)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("UnmarshalBinary = %v, want error containing %q", err, tc.want)
			}
			if id.NetworkID != "untouched" {
				t.Fatalf("a failed UnmarshalBinary changed the receiver")
			}
		})
	}
}

func FuzzEnclaveIDUnmarshal(f *testing.F) {
	sr := signedRelease(f, testKeys(2)...)
	for _, id := range []EnclaveID{sr.NodeID, sr.AgentID, {}} {
		b, err := id.MarshalBinary()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0, 0, 0, 1})
	kmg := groupOf(testKeys(2), 2)
	f.Fuzz(func(t *testing.T, data []byte) {
		var id EnclaveID
		if err := id.UnmarshalBinary(data); err != nil {
			return
		}
		_ = id.Verify(kmg, id.NetworkID, id.Role, id.MREnclave)
		out, err := id.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a decoded id: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("encoding is not canonical:\n in %x\nout %x", data, out)
		}
	})
}
