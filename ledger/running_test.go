package ledger

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/teeup/teeup/release"
)

// upgradedTo approves older and then newer, schedules newer and commits
// blocks past its activation height: newer is then the running release.
// The chain must run with newer's node MRENCLAVE (withSelf).
func (c *chain) upgradedTo(older, newer *release.SignedRelease) {
	c.t.Helper()
	if older != nil {
		c.approveRelease(older)
	}
	c.approveRelease(newer)
	h := c.head() + MinScheduleLead
	c.scheduleUpgrade(newer.Manifest.Version, h)
	for c.head() <= h {
		c.commit()
	}
}

// runningIs checks the running release, in the store and its governance
// view.
func (c *chain) runningIs(want string) {
	c.t.Helper()
	got, err := c.s.RunningRelease()
	if err != nil || got != want {
		c.t.Fatalf("running release %q, %v; want %q", got, err, want)
	}
	if v := mustGovernance(c.t, c.s); v.Running != want {
		c.t.Fatalf("governance view: running release %q, want %q", v.Running, want)
	}
}

func genesisWithRelease(version string) *Genesis {
	g := govGenesis()
	g.Release = version
	return g
}

// TestDowngradeRefusedAtAdmission: a proposal or schedule of a version
// that is not newer than the running release is rejected at admission
// with CodeDowngrade, unless an approved rollback record allows exactly
// that version; a genesis without a release sets no floor.
func TestDowngradeRefusedAtAdmission(t *testing.T) {
	v15 := testRelease(t, "1.5.0", nil)
	v2 := testRelease(t, "2.0.0", nil)
	upgraded := func(c *chain) { c.upgradedTo(v15, v2) }
	rolledBack := func(c *chain) {
		upgraded(c)
		c.gov(op1, TxApproveRollback, rollbackPayload("2.0.0", "1.5.0"))
		c.gov(op2, TxApproveRollback, rollbackPayload("2.0.0", "1.5.0"))
		c.commit()
	}
	cases := []struct {
		name    string
		genesis *Genesis
		setup   func(c *chain)
		tx      func(c *chain) *Tx
		code    Code // CodeOK: admitted
	}{
		{name: "propose the genesis release", genesis: genesisWithRelease("2.0.0"),
			tx: func(c *chain) *Tx { return c.govTx(op1, TxProposeRelease, proposalPayload(t, v2)) }, code: CodeDowngrade},
		{name: "propose older than the genesis release", genesis: genesisWithRelease("2.0.0"),
			tx: func(c *chain) *Tx { return c.govTx(op1, TxProposeRelease, proposalPayload(t, v15)) }, code: CodeDowngrade},
		{name: "propose a pre-release of the genesis release", genesis: genesisWithRelease("2.0.0"),
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "2.0.0-rc.1", nil)))
			}, code: CodeDowngrade},
		{name: "propose newer than the genesis release", genesis: genesisWithRelease("2.0.0"),
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "2.0.1", nil)))
			}, code: CodeOK},
		{name: "a genesis without a release sets no floor", genesis: govGenesis(),
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "0.0.1", nil)))
			}, code: CodeOK},
		{name: "schedule the running release", genesis: genesisWithRelease("1.0.0"), setup: upgraded,
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+MinScheduleLead))
			}, code: CodeDowngrade},
		{name: "schedule older than the running release", genesis: genesisWithRelease("1.0.0"), setup: upgraded,
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxScheduleUpgrade, schedulePayload("1.5.0", c.head()+MinScheduleLead))
			}, code: CodeDowngrade},
		{name: "schedule older with an approved rollback to it", genesis: genesisWithRelease("1.0.0"), setup: rolledBack,
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxScheduleUpgrade, schedulePayload("1.5.0", c.head()+MinScheduleLead))
			}, code: CodeOK},
		{name: "the first upgrade sets the floor of a genesis without a release", genesis: govGenesis(), setup: upgraded,
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxScheduleUpgrade, schedulePayload("1.5.0", c.head()+MinScheduleLead))
			}, code: CodeDowngrade},
		{name: "propose older than the running release", genesis: genesisWithRelease("1.0.0"), setup: upgraded,
			tx: func(c *chain) *Tx {
				return c.govTx(op1, TxProposeRelease, proposalPayload(t, testRelease(t, "1.9.0", nil)))
			}, code: CodeDowngrade},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := openChain(t, tc.genesis, withSelf(nodeMeasurement("2.0.0")))
			if tc.setup != nil {
				tc.setup(c)
			}
			tx := tc.tx(c)
			digest := govDigest(t, c.s)
			res := c.submit(tx)
			if tc.code == CodeOK {
				if !res.Accepted || res.Code != CodeOK {
					t.Fatalf("result %+v, want admitted", res)
				}
				return
			}
			if res.Accepted || res.Code != tc.code || res.Reason == "" {
				t.Fatalf("result %+v, want a rejection with code %q", res, tc.code)
			}
			if st, ok, err := c.s.TxStatus(tx.ID()); err != nil || !ok || st.State != StateRejected || st.Code != tc.code {
				t.Fatalf("status %+v %v %v, want rejected with %q", st, ok, err, tc.code)
			}
			if govDigest(t, c.s) != digest {
				t.Fatal("a rejected transaction changed the governance state")
			}
		})
	}
}

// TestRunningReleaseTakesEffectAboveActivation: the running release is
// the genesis's until the chain commits a block above the activation
// height of the schedule in force (the halt height itself still runs the
// old release), then the scheduled version's; it survives a reopen.
func TestRunningReleaseTakesEffectAboveActivation(t *testing.T) {
	dir := t.TempDir()
	o := testOptions(genesisWithRelease("1.0.0"))
	o.SelfMeasurement = nodeMeasurement("2.0.0")
	c := openChainAt(t, dir, o)
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	c.runningIs("1.0.0")
	c.approveRelease(testRelease(t, "2.0.0", nil))
	h := c.head() + MinScheduleLead
	c.scheduleUpgrade("2.0.0", h)
	for c.head() < h {
		c.commit()
	}
	c.runningIs("1.0.0") // the block at H is the old release's last
	c.commit()
	c.runningIs("2.0.0")
	// A schedule vote for the old release in the first new block's pool is
	// refused too.
	res := c.submit(c.govTx(op3, TxScheduleUpgrade, schedulePayload("2.0.0", c.head()+MinScheduleLead)))
	if res.Accepted || res.Code != CodeDowngrade {
		t.Fatalf("re-scheduling the running release: %+v", res)
	}
	if err := c.s.Close(); err != nil {
		t.Fatal(err)
	}
	c = openChainAt(t, dir, o)
	c.runningIs("2.0.0")
}

func TestGenesisRelease(t *testing.T) {
	plain := govGenesis()
	withRel := govGenesis()
	withRel.Release = "1.2.3"
	h0, err := plain.Hash()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["release"]; ok {
		t.Fatal("a genesis without a release writes the field: older genesis hashes would change")
	}
	h1, err := withRel.Hash()
	if err != nil || h1 == h0 {
		t.Fatalf("a named release does not change the genesis hash (%v)", err)
	}
	raw, err = json.Marshal(withRel)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseGenesis(raw)
	if err != nil || back.Release != "1.2.3" {
		t.Fatalf("parse back: %+v, %v", back, err)
	}
	for _, bad := range []string{"v1.2.3", "1.2", "1.2.3+build.1", "latest"} {
		g := govGenesis()
		g.Release = bad
		if err := g.Validate(); err == nil {
			t.Errorf("release %q accepted", bad)
		}
	}
	// An old genesis (no release) opens, and there is no floor.
	c := openChain(t, plain)
	c.runningIs("")
}

// FuzzDecodeRunning: the running-release decoder never panics, accepts
// only valid versions, and what it accepts re-encodes to its input.
func FuzzDecodeRunning(f *testing.F) {
	f.Add(encodeRunning("2.0.0"))
	f.Add(encodeRunning("1.0.0-rc.1"))
	f.Add(encodeRunning("v1"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeRunning(b)
		if err != nil {
			return
		}
		if release.ValidateVersion(v) != nil || !bytes.Equal(encodeRunning(v), b) {
			t.Fatalf("decoded %q from %x", v, b)
		}
	})
}
