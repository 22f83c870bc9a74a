package ledger

import (
	"context"
	"crypto/ed25519"
	"testing"

	"github.com/teeup/teeup/release"
)

var (
	operator1 = testKey(70) // node 1's operator in memberGenesis
	newNode   = testKey(71) // identity key of node 9, added by governance
	newKey1   = testKey(72) // node 1's key after a re-key
	op4       = testKey(63)
)

// memberGenesis is govGenesis with node 1 operated by operator1.
func memberGenesis() *Genesis {
	g := govGenesis()
	g.Nodes[0].Operator = addrOf(operator1).String()
	return g
}

func spec9() MemberSpec {
	return MemberSpec{ID: 9, Name: "node-9", PeerAddr: "10.0.0.9:7101", ClientAddr: "10.0.0.9:7201", Operator: addrOf(op3), NodeKey: addrOf(newNode)}
}

// vote submits a governance transaction and commits it in a block.
func (c *chain) voteAndCommit(key ed25519.PrivateKey, kind TxKind, payload []byte) {
	c.t.Helper()
	c.gov(key, kind, payload)
	c.commit()
}

func members(t *testing.T, s *Store) map[uint64]Member {
	t.Helper()
	ms, err := s.Members()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint64]Member{}
	for _, m := range ms {
		out[m.ID] = m
	}
	return out
}

func TestAddAndRemoveMemberByQuorum(t *testing.T) {
	c := openChain(t, memberGenesis())
	if got := members(t, c.s); len(got) != 1 || !got[1].Active() || got[1].Operator != addrOf(operator1) {
		t.Fatalf("genesis members: %+v", got)
	}
	add := EncodeMemberSpec(spec9())
	c.voteAndCommit(op1, TxAddNode, add)
	if _, ok := members(t, c.s)[9]; ok {
		t.Fatal("one vote of a quorum of two added the member")
	}
	c.voteAndCommit(op2, TxAddNode, add)
	m, ok := members(t, c.s)[9]
	if !ok || !m.Active() || m.AddedAt == 0 || m.NodeKey != addrOf(newNode) {
		t.Fatalf("node 9 after the quorum: %+v (ok %v)", m, ok)
	}
	// The new node registers with the key the vote named, and no other.
	res := c.apply(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 9, Key: addrOf(newKey1)}})
	if res.Accepted || res.Code != CodeKeyConflict {
		t.Fatalf("registration with another key: %+v", res)
	}
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 9, Key: addrOf(newNode)}})

	rm := EncodeNodeRemoval(NodeRemoval{ID: 9})
	c.voteAndCommit(op1, TxRemoveNode, rm)
	c.voteAndCommit(op3, TxRemoveNode, rm)
	m = members(t, c.s)[9]
	if m.Active() {
		t.Fatal("node 9 still a member after the removal quorum")
	}
	// A removed node cannot re-register, and its id is never reused.
	if res := c.apply(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 9, Key: addrOf(newNode)}}); res.Accepted {
		t.Fatal("a removed node re-registered")
	}
	res = c.submit(c.govTx(op1, TxAddNode, add))
	if res.Accepted || res.Code != CodeConflict {
		t.Fatalf("re-adding a removed id: %+v", res)
	}
	changes, err := c.s.MembershipChanges()
	if err != nil || len(changes) != 2 || changes[0].Kind != TxAddNode || changes[1].Kind != TxRemoveNode {
		t.Fatalf("changes %+v, %v", changes, err)
	}
}

func TestRekeyByOperatorRevokesTheOldKey(t *testing.T) {
	c := openChain(t, memberGenesis())
	for i := 0; i < 3; i++ {
		c.pay(alice, bob, 1)
		c.commit()
	}
	old := addrOf(nodeSigner(1))
	rk := EncodeNodeRekey(NodeRekey{ID: 1, Key: addrOf(newKey1)})
	// Not the operator and not NOG: refused.
	if res := c.submit(c.govTx(alice, TxRekeyNode, rk)); res.Accepted || res.Code != CodeNotMember {
		t.Fatalf("re-key by a stranger: %+v", res)
	}
	c.voteAndCommit(operator1, TxRekeyNode, rk)
	rec, ok, err := c.s.Node(1)
	if err != nil || !ok || rec.Key != addrOf(newKey1) {
		t.Fatalf("node 1 after the re-key: %+v %v %v", rec, ok, err)
	}
	// The revoked key cannot register again; the new one proposes blocks.
	if res := c.apply(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: old}}); res.Accepted {
		t.Fatal("the revoked key registered again")
	}
	if _, err := c.s.BuildBlock(1, nodeSigner(1), c.nextTime(), 0); err == nil {
		t.Fatal("a block was built with the revoked key")
	}
	blk, err := c.s.BuildBlock(1, newKey1, c.nextTime(), 0)
	if err != nil {
		t.Fatal(err)
	}
	forged := *blk
	forged.Header.ProposerKey = old
	resign(&forged, nodeSigner(1))
	if res := c.apply(&Command{Kind: CmdBlock, Block: &forged}); res.Accepted {
		t.Fatal("a block signed by the revoked key was accepted")
	}
	blk, err = c.s.BuildBlock(1, newKey1, c.nextTime(), 0)
	if err != nil {
		t.Fatal(err)
	}
	c.mustAccept(&Command{Kind: CmdBlock, Block: blk})
	// Blocks signed by the revoked key are still verifiable history.
	dir := t.TempDir() + "/cp"
	applied, _, err := c.s.CheckpointState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyCheckpoint(context.Background(), dir, VerifyOptions{
		Genesis: c.s.Genesis(), LedgerKey: testLedgerKey(), Applied: applied,
		CheckRaftConf: func([]byte) error { return nil },
	}); err != nil {
		t.Fatalf("history with a revoked key does not verify: %v", err)
	}
}

func TestNOGRotationRefusesFormerMembers(t *testing.T) {
	c := openChain(t, memberGenesis())
	change := EncodeGroupChange(GroupChange{Group: GroupNOG, Keys: []Address{addrOf(op2), addrOf(op3), addrOf(op4)}, Threshold: 2})
	// A pending vote of op1 for something else is dropped by the rotation.
	c.voteAndCommit(op1, TxAddNode, EncodeMemberSpec(spec9()))
	c.voteAndCommit(op1, TxChangeGroup, change)
	c.voteAndCommit(op2, TxChangeGroup, change)
	nog, _, err := c.s.Groups()
	if err != nil || nog.Threshold != 2 || !nog.Contains(op4.Public().(ed25519.PublicKey)) || nog.Contains(op1.Public().(ed25519.PublicKey)) {
		t.Fatalf("NOG after the rotation: %+v %v", nog, err)
	}
	votes, err := c.s.MembershipVotes()
	if err != nil || len(votes) != 0 {
		t.Fatalf("votes survived the rotation: %+v %v", votes, err)
	}
	res := c.submit(c.govTx(op1, TxAddNode, EncodeMemberSpec(spec9())))
	if res.Accepted || res.Code != CodeNotMember {
		t.Fatalf("a rotated-out member's vote: %+v", res)
	}
	// The new member votes.
	c.voteAndCommit(op4, TxAddNode, EncodeMemberSpec(spec9()))
	c.voteAndCommit(op3, TxAddNode, EncodeMemberSpec(spec9()))
	if _, ok := members(t, c.s)[9]; !ok {
		t.Fatal("the new NOG could not add a member")
	}
}

func TestKMGRotationNeedsTheCurrentKMG(t *testing.T) {
	c := openChain(t, memberGenesis())
	kmg3 := testKey(53)
	next := GroupChange{Group: GroupKMG, Keys: []Address{addrOf(kmg2), addrOf(kmg3)}, Threshold: 2}
	seq, err := c.s.NextGroupChangeSeq()
	if err != nil {
		t.Fatal(err)
	}
	sign := func(k ed25519.PrivateKey) release.Signature {
		return release.SignatureOf(k, GroupChangeSigningBytes(testChain, seq, next))
	}
	unsigned := next
	unsigned.KMGSignatures = []release.Signature{sign(kmg1)}
	if res := c.submit(c.govTx(op1, TxChangeGroup, EncodeGroupChange(unsigned))); res.Accepted || res.Code != CodeBadSignature {
		t.Fatalf("KMG change short of the threshold: %+v", res)
	}
	next.KMGSignatures = []release.Signature{sign(kmg1), sign(kmg2)}
	c.voteAndCommit(op1, TxChangeGroup, EncodeGroupChange(next))
	c.voteAndCommit(op2, TxChangeGroup, EncodeGroupChange(next))
	_, kmg, err := c.s.Groups()
	if err != nil || !kmg.Contains(kmg3.Public().(ed25519.PublicKey)) || kmg.Contains(kmg1.Public().(ed25519.PublicKey)) {
		t.Fatalf("KMG after the rotation: %+v %v", kmg, err)
	}
	// Releases now need the new group's signatures.
	res := c.submit(c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "1.0.0", nil, kmg1, kmg2))))
	if res.Accepted {
		t.Fatal("a release signed by the former KMG was admitted")
	}
	c.gov(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "1.0.0", nil, kmg2, kmg3)))
}

func TestMembershipRejections(t *testing.T) {
	badAddr := spec9()
	badAddr.PeerAddr = "nohost"
	dupAddr := spec9()
	dupAddr.PeerAddr = testGenesis(1).Nodes[0].PeerAddr
	takenKey := spec9()
	takenKey.NodeKey = addrOf(nodeSigner(1))
	cases := []struct {
		name    string
		key     ed25519.PrivateKey
		kind    TxKind
		payload []byte
		code    Code
	}{
		{"add by a stranger", alice, TxAddNode, EncodeMemberSpec(spec9()), CodeNotMember},
		{"add an existing member", op1, TxAddNode, EncodeMemberSpec(MemberSpec{ID: 1, PeerAddr: "a:1", ClientAddr: "a:2"}), CodeConflict},
		{"add with a bad address", op1, TxAddNode, EncodeMemberSpec(badAddr), CodeMalformed},
		{"add with a used address", op1, TxAddNode, EncodeMemberSpec(dupAddr), CodeKeyConflict},
		{"add with a registered key", op1, TxAddNode, EncodeMemberSpec(takenKey), CodeKeyConflict},
		{"add id zero", op1, TxAddNode, EncodeMemberSpec(MemberSpec{PeerAddr: "a:1", ClientAddr: "a:2"}), CodeMalformed},
		{"remove a non-member", op1, TxRemoveNode, EncodeNodeRemoval(NodeRemoval{ID: 5}), CodeNotMember},
		{"remove the last member", op1, TxRemoveNode, EncodeNodeRemoval(NodeRemoval{ID: 1}), CodeConflict},
		{"rekey to the same key", operator1, TxRekeyNode, EncodeNodeRekey(NodeRekey{ID: 1, Key: addrOf(nodeSigner(1))}), CodeDuplicate},
		{"rekey a non-member", operator1, TxRekeyNode, EncodeNodeRekey(NodeRekey{ID: 5, Key: addrOf(newKey1)}), CodeNotMember},
		{"group with threshold above its size", op1, TxChangeGroup, EncodeGroupChange(GroupChange{Group: GroupNOG, Keys: []Address{addrOf(op1)}, Threshold: 2}), CodeMalformed},
		{"group with a duplicate key", op1, TxChangeGroup, EncodeGroupChange(GroupChange{Group: GroupNOG, Keys: []Address{addrOf(op1), addrOf(op1)}, Threshold: 1}), CodeMalformed},
		{"unknown group", op1, TxChangeGroup, EncodeGroupChange(GroupChange{Group: 7, Keys: []Address{addrOf(op1)}, Threshold: 1}), CodeMalformed},
		{"KMG change unsigned", op1, TxChangeGroup, EncodeGroupChange(GroupChange{Group: GroupKMG, Keys: []Address{addrOf(op1)}, Threshold: 1}), CodeBadSignature},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openChain(t, memberGenesis())
			res := c.submit(c.govTx(tc.key, tc.kind, tc.payload))
			if res.Accepted || res.Code != tc.code || res.Reason == "" {
				t.Fatalf("got %+v, want a rejection with code %q", res, tc.code)
			}
		})
	}
	t.Run("duplicate vote", func(t *testing.T) {
		c := openChain(t, memberGenesis())
		c.voteAndCommit(op1, TxAddNode, EncodeMemberSpec(spec9()))
		res := c.submit(c.govTx(op1, TxAddNode, EncodeMemberSpec(spec9())))
		if res.Accepted || res.Code != CodeDuplicate {
			t.Fatalf("got %+v", res)
		}
	})
}

func FuzzDecodeMembershipPayloads(f *testing.F) {
	f.Add(EncodeMemberSpec(spec9()))
	f.Add(EncodeNodeRekey(NodeRekey{ID: 1, Key: addrOf(newKey1)}))
	f.Add(EncodeGroupChange(GroupChange{Group: GroupKMG, Keys: []Address{addrOf(op1)}, Threshold: 1,
		KMGSignatures: []release.Signature{release.SignatureOf(kmg1, []byte("x"))}}))
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := DecodeMemberSpec(b); err == nil {
			if again, err := DecodeMemberSpec(EncodeMemberSpec(m)); err != nil || again != m {
				t.Fatalf("member spec round trip: %+v %v", again, err)
			}
		}
		if r, err := DecodeNodeRekey(b); err == nil && r.ID == 0 {
			t.Fatal("rekey of id 0 decoded")
		}
		_, _ = DecodeNodeRemoval(b)
		if c, err := DecodeGroupChange(b); err == nil {
			if c.Threshold < 1 || c.Threshold > len(c.Keys) {
				t.Fatalf("group change with threshold %d of %d decoded", c.Threshold, len(c.Keys))
			}
		}
		_, _ = decodeMembershipState(b)
		_, _ = decodeMember(b)
		_, _ = decodeMembershipChange(b)
	})
}
