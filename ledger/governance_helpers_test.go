package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Governance test actors: op1..op3 form the Node Operators Group (quorum
// 2); kmg1 and kmg2 the Key Management Group (threshold 2); kmgOutsider
// signs like a KMG member but is not one.
var (
	op1         = testKey(60)
	op2         = testKey(61)
	op3         = testKey(62)
	kmg1        = testKey(50)
	kmg2        = testKey(51)
	kmgOutsider = testKey(52)
)

// govGenesis returns testGenesis(1) with a three-member NOG of quorum 2.
func govGenesis() *Genesis {
	g := testGenesis(1)
	g.NOG = release.Group{Keys: []string{pubHex(op1), pubHex(op2), pubHex(op3)}, Threshold: 2}
	return g
}

// nodeMeasurement is the node MRENCLAVE of a test release version.
func nodeMeasurement(version string) tee.Measurement {
	return sha256.Sum256([]byte("node " + version))
}

func testComponent(role, version string) release.Component {
	m := tee.Measurement(sha256.Sum256([]byte(role + " " + version)))
	return release.Component{
		MREnclave: m, SHA256: m.String(), SignerID: sha256.Sum256([]byte("signer")),
		ProductID: 1, SVN: 1, URL: "https://releases.example.com/" + version + "/teeup-" + role,
	}
}

// testRelease returns a release of version for the test chain, edited by
// edit (if not nil) and signed by signers (kmg1 and kmg2 if none).
func testRelease(t testing.TB, version string, edit func(*release.Manifest), signers ...ed25519.PrivateKey) *release.SignedRelease {
	t.Helper()
	m := release.Manifest{
		NetworkID: testChain, Version: version,
		Node: testComponent("node", version), Agent: testComponent("agent", version),
		CreatedAt: genesisTime,
	}
	if edit != nil {
		edit(&m)
	}
	sr, err := release.New(m)
	if err != nil {
		t.Fatalf("release.New: %v", err)
	}
	if len(signers) == 0 {
		signers = []ed25519.PrivateKey{kmg1, kmg2}
	}
	for _, k := range signers {
		if err := release.Sign(sr, k); err != nil {
			t.Fatalf("release.Sign: %v", err)
		}
	}
	return sr
}

func proposalPayload(t testing.TB, sr *release.SignedRelease) []byte {
	t.Helper()
	b, err := json.Marshal(sr)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func approvalPayload(t testing.TB, sr *release.SignedRelease) []byte {
	t.Helper()
	h, err := ManifestHash(sr)
	if err != nil {
		t.Fatal(err)
	}
	return EncodeReleaseApproval(ReleaseApproval{Version: sr.Manifest.Version, ManifestHash: h})
}

func schedulePayload(version string, h uint64) []byte {
	return EncodeUpgradeSchedule(UpgradeSchedule{Version: version, ActivationHeight: h})
}

func abortPayload(version, reason string) []byte {
	return EncodeUpgradeAbort(UpgradeAbort{Version: version, Reason: reason})
}

func rollbackPayload(from, to string) []byte {
	return EncodeRollbackApproval(RollbackApproval{From: from, To: to})
}

// govTx returns a governance transaction from key with the account's next
// nonce.
func (c *chain) govTx(key ed25519.PrivateKey, kind TxKind, payload []byte) *Tx {
	c.t.Helper()
	a := c.account(key)
	tx, err := NewGovernanceTx(testChain, kind, payload, a.Nonce+a.Pending+1, key)
	if err != nil {
		c.t.Fatalf("NewGovernanceTx: %v", err)
	}
	return tx
}

// gov submits a governance transaction that must be admitted.
func (c *chain) gov(key ed25519.PrivateKey, kind TxKind, payload []byte) *Tx {
	c.t.Helper()
	tx := c.govTx(key, kind, payload)
	if res := c.submit(tx); !res.Accepted {
		c.t.Fatalf("%s rejected: %s", kind, res.Reason)
	}
	return tx
}

// approveRelease proposes sr (op1) and approves it (op2), a block each:
// an approval is admitted only once the proposal is committed.
func (c *chain) approveRelease(sr *release.SignedRelease) {
	c.t.Helper()
	c.gov(op1, TxProposeRelease, proposalPayload(c.t, sr))
	c.commit()
	c.gov(op2, TxApproveRelease, approvalPayload(c.t, sr))
	c.commit()
}

// scheduleUpgrade votes (op1, op2) for version at h and commits.
func (c *chain) scheduleUpgrade(version string, h uint64) {
	c.t.Helper()
	c.gov(op1, TxScheduleUpgrade, schedulePayload(version, h))
	c.gov(op2, TxScheduleUpgrade, schedulePayload(version, h))
	c.commit()
}

// head returns the chain's head height.
func (c *chain) head() uint64 {
	h, _ := c.s.Head()
	return h
}

// govDigest hashes every governance key and value.
func govDigest(t testing.TB, s *Store) Hash {
	t.Helper()
	h := sha256.New()
	err := scan(s.db, []byte(GovernancePrefix), false, func(k, v []byte) (bool, error) {
		h.Write(k)
		h.Write([]byte{0})
		h.Write(v)
		h.Write([]byte{0})
		return true, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out Hash
	copy(out[:], h.Sum(nil))
	return out
}

func mustGovernance(t testing.TB, s *Store) *GovernanceView {
	t.Helper()
	v, err := s.Governance()
	if err != nil {
		t.Fatalf("Governance: %v", err)
	}
	return v
}

func withSelf(m tee.Measurement) func(*Options) { return func(o *Options) { o.SelfMeasurement = m } }
