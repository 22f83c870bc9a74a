package handover

import (
	"bytes"
	"crypto/hpke"
	"crypto/sha256"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

func TestNewRequesterRejects(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name string
		mod  func(*RequesterConfig)
		want string
	}{
		{"no enclave", func(c *RequesterConfig) { c.Enclave = nil }, "no enclave"},
		{"empty chain id", func(c *RequesterConfig) { c.ChainID = "" }, "chain id is empty"},
		{"chain id too long", func(c *RequesterConfig) { c.ChainID = strings.Repeat("c", MaxChainIDLen+1) }, "chain id is 65 bytes"},
		{"group without keys", func(c *RequesterConfig) { c.KMG = release.Group{Threshold: 1} }, "group has no keys"},
		{"unknown role", func(c *RequesterConfig) { c.Role = "" }, `role ""`},
		{"no AcceptProvider", func(c *RequesterConfig) { c.AcceptProvider = nil }, "AcceptProvider is required"},
		{"own ID below threshold", func(c *RequesterConfig) {
			c.ID = signedID(testChain, release.RoleAgent, f.ag.UniqueID, f.kmgKeys[2])
		}, "1 of 2 required signatures"},
		{"own ID for another MRENCLAVE", func(c *RequesterConfig) { c.Enclave = f.otherNode }, "for MRENCLAVE"},
		{"own ID for another role", func(c *RequesterConfig) { c.Role = release.RoleNode }, `for role "agent", not "node"`},
		{"own ID for another network", func(c *RequesterConfig) { c.ChainID = "other-net" }, `for network "teeup-test-1", not "other-net"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := RequesterConfig{
				Enclave: f.agent, ChainID: testChain, KMG: f.kmg, Role: release.RoleAgent, ID: f.agID,
				AcceptProvider: supervisedIs(f.n1.UniqueID),
			}
			tc.mod(&cfg)
			r, err := NewRequester(cfg)
			wantErr(t, err, tc.want, nil)
			if r != nil {
				t.Fatal("requester returned with the error")
			}
		})
	}
}

func TestAnswerContent(t *testing.T) {
	f := newFixture(t)
	p := f.oldNodeProvider(t)
	r := f.agentRequester(t)
	if got := r.Request(); got.RequesterRole != release.RoleAgent {
		t.Fatalf("request role %q", got.RequesterRole)
	}
	ch, err := p.Challenge(r.Request())
	if err != nil {
		t.Fatal(err)
	}
	ans, err := r.Answer(ch)
	if err != nil {
		t.Fatal(err)
	}
	if ans.Nonce != ch.Nonce || len(ans.OneTimeKey) != OneTimeKeySize {
		t.Fatalf("answer nonce %x key %d bytes", ans.Nonce, len(ans.OneTimeKey))
	}
	if !bytes.Equal(ans.RequesterTargetInfo, mustTargetInfo(t, f.agent)) {
		t.Fatal("target info is not the requester enclave's")
	}
	rep, err := f.oldNode.VerifyLocalReport(ans.Report)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Identity != f.ag || rep.Data != BindAnswer(ch.Nonce, testChain, release.RoleAgent, ans.OneTimeKey) {
		t.Fatalf("report identity %v data %x", rep.Identity, rep.Data)
	}
	if ans.RequesterID.MREnclave != f.ag.UniqueID || ans.RequesterID.Role != release.RoleAgent {
		t.Fatalf("requester id %+v", ans.RequesterID)
	}
	// Each requester has its own one-time key.
	r2 := f.agentRequester(t)
	ch2, err := p.Challenge(r2.Request())
	if err != nil {
		t.Fatal(err)
	}
	ans2, err := r2.Answer(ch2)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(ans.OneTimeKey, ans2.OneTimeKey) {
		t.Fatal("two requesters share a one-time key")
	}
}

// TestAnswerRejects checks every refused challenge, then that the requester
// is unchanged: it still answers the genuine challenge and gets the secret.
func TestAnswerRejects(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(f *fixture, ch *Challenge)
		want   string
		is     error
	}{
		{"wrong chain id", func(_ *fixture, ch *Challenge) { ch.ChainID = "other-chain" },
			`it is for chain "other-chain", this requester is on "teeup-test-1"`, nil},
		{"expired", func(f *fixture, ch *Challenge) { ch.Expiry = f.clock.Now().UnixNano() }, "challenge expired", ErrChallengeExpired},
		{"long expired", func(f *fixture, ch *Challenge) { ch.Expiry = f.clock.Now().Add(-time.Hour).UnixNano() }, "challenge expired", ErrChallengeExpired},
		{"unknown provider role", func(_ *fixture, ch *Challenge) { ch.ProviderRole = "root" }, `provider role "root"`, nil},
		{"no provider target info", func(_ *fixture, ch *Challenge) { ch.ProviderTargetInfo = nil }, "provider target info is empty", nil},
		{"oversized provider target info", func(_ *fixture, ch *Challenge) { ch.ProviderTargetInfo = make([]byte, MaxTargetInfoSize+1) },
			"provider target info is 4097 bytes", nil},
		{"unusable provider target info", func(_ *fixture, ch *Challenge) { ch.ProviderTargetInfo = []byte("junk") },
			"report for the provider", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			p := f.oldNodeProvider(t)
			r := f.agentRequester(t)
			ch, err := p.Challenge(r.Request())
			if err != nil {
				t.Fatal(err)
			}
			bad := ch
			bad.ProviderTargetInfo = bytes.Clone(ch.ProviderTargetInfo)
			tc.mutate(f, &bad)
			_, err = r.Answer(bad)
			wantErr(t, err, tc.want, tc.is)
			ans, err := r.Answer(ch)
			if err != nil {
				t.Fatalf("genuine challenge after a refused one: %v", err)
			}
			d, err := p.Deliver(ans)
			if err != nil {
				t.Fatal(err)
			}
			got, err := r.Receive(d)
			if err != nil || !bytes.Equal(got, f.secret) {
				t.Fatalf("Receive = %q, %v", got, err)
			}
		})
	}
}

// sealTo seals secret to the answer's one-time key under info, and has
// enclave e report over it for the requester, as a provider would.
func sealTo(t *testing.T, e tee.Enclave, ans Answer, info, secret []byte) Delivery {
	t.Helper()
	pub, err := suiteKEM().NewPublicKey(ans.OneTimeKey)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := hpke.Seal(pub, suiteKDF(), suiteAEAD(), info, secret)
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.LocalReport(ans.RequesterTargetInfo, BindDelivery(ans.Nonce, sha256.Sum256(ct)))
	if err != nil {
		t.Fatal(err)
	}
	return Delivery{Nonce: ans.Nonce, Ciphertext: ct, Report: rep}
}

// TestReceiveRejects checks every refused delivery. When the attack only
// altered the delivery, the requester must then still accept the genuine
// one; otherwise a fresh requester must still get the secret from a
// correct provider.
func TestReceiveRejects(t *testing.T) {
	type leg int
	const (
		oldToAgent leg = iota
		agentToNew
	)
	tests := []struct {
		name string
		leg  leg
		// provider, if set, replaces the leg's correct provider.
		provider func(t *testing.T, f *fixture) *Provider
		// challenge, if set, alters the challenge on its way.
		challenge func(f *fixture, ch *Challenge)
		// delivery, if set, alters the delivery on its way.
		delivery func(t *testing.T, f *fixture, ans Answer, d *Delivery)
		want     string
		// is, if set, is the sentinel the error must match.
		is error
		// genuineAfter: the unaltered delivery must then be received.
		genuineAfter bool
	}{
		{name: "delivery for another nonce", leg: oldToAgent,
			delivery: func(_ *testing.T, _ *fixture, _ Answer, d *Delivery) { d.Nonce[0] ^= 1 },
			want:     "another challenge's nonce", genuineAfter: true},
		{name: "tampered ciphertext byte", leg: oldToAgent,
			delivery: func(_ *testing.T, _ *fixture, _ Answer, d *Delivery) { d.Ciphertext = flip(d.Ciphertext, -1) },
			want:     "does not bind this nonce and ciphertext", genuineAfter: true},
		{name: "ciphertext substituted by the host", leg: oldToAgent,
			delivery: func(t *testing.T, _ *fixture, ans Answer, d *Delivery) {
				pub, err := suiteKEM().NewPublicKey(ans.OneTimeKey)
				if err != nil {
					t.Fatal(err)
				}
				if d.Ciphertext, err = hpke.Seal(pub, suiteKDF(), suiteAEAD(), nil, []byte("attacker keys")); err != nil {
					t.Fatal(err)
				}
			},
			want: "does not bind this nonce and ciphertext", genuineAfter: true},
		{name: "tampered delivery report byte", leg: oldToAgent,
			delivery: func(_ *testing.T, _ *fixture, _ Answer, d *Delivery) { d.Report = flip(d.Report, 80) },
			want:     "MAC does not verify", genuineAfter: true},
		{name: "delivery report made for another target", leg: oldToAgent,
			delivery: func(t *testing.T, f *fixture, _ Answer, d *Delivery) {
				rep, err := f.oldNode.LocalReport(mustTargetInfo(t, f.newNode), BindDelivery(d.Nonce, sha256.Sum256(d.Ciphertext)))
				if err != nil {
					t.Fatal(err)
				}
				d.Report = rep
			},
			want: "made for enclave " + measure("teeup-node v2").String(), genuineAfter: true},
		{name: "delivery report made on another platform", leg: oldToAgent,
			delivery: func(t *testing.T, f *fixture, ans Answer, d *Delivery) {
				oldOnB := f.platB.NewEnclave(f.n1)
				rep, err := oldOnB.LocalReport(ans.RequesterTargetInfo, BindDelivery(d.Nonce, sha256.Sum256(d.Ciphertext)))
				if err != nil {
					t.Fatal(err)
				}
				d.Report = rep
			},
			want: "MAC does not verify (made on another platform", genuineAfter: true},
		{name: "secret sealed under another exchange's info", leg: oldToAgent,
			delivery: func(t *testing.T, f *fixture, ans Answer, d *Delivery) {
				info := sealInfo(ans.Nonce, "other-chain",
					party{role: release.RoleNode, mrenclave: f.n1.UniqueID}, party{role: release.RoleAgent, mrenclave: f.ag.UniqueID})
				*d = sealTo(t, f.oldNode, ans, info, f.secret)
			},
			want: "open the sealed secret", genuineAfter: true},
		{name: "secret sealed for another requester measurement", leg: oldToAgent,
			delivery: func(t *testing.T, f *fixture, ans Answer, d *Delivery) {
				info := sealInfo(ans.Nonce, testChain,
					party{role: release.RoleNode, mrenclave: f.n1.UniqueID}, party{role: release.RoleAgent, mrenclave: f.n3.UniqueID})
				*d = sealTo(t, f.oldNode, ans, info, f.secret)
			},
			want: "open the sealed secret", genuineAfter: true},
		{name: "provider role changed on the way, no provider id", leg: oldToAgent,
			challenge: func(_ *fixture, ch *Challenge) { ch.ProviderRole = release.RoleAgent },
			want:      "open the sealed secret"},
		{name: "empty delivery report", leg: oldToAgent,
			delivery: func(_ *testing.T, _ *fixture, _ Answer, d *Delivery) { d.Report = nil },
			want:     "provider report", genuineAfter: true},
		{name: "AcceptProvider refuses another node than the supervised one", leg: oldToAgent,
			provider: func(t *testing.T, f *fixture) *Provider {
				return f.oldNodeProvider(t, func(c *ProviderConfig) { c.Enclave = f.otherNode })
			},
			want: "not accepted", is: ErrWrongEnclave},
		{name: "provider without ProviderID when the requester requires one", leg: agentToNew,
			provider: func(t *testing.T, f *fixture) *Provider {
				return f.agentProvider(t, f.secret, func(c *ProviderConfig) { c.ID = nil })
			},
			want: "not accepted", is: ErrNoEnclaveID},
		{name: "old node offering keys to the new node", leg: agentToNew,
			provider: func(t *testing.T, f *fixture) *Provider {
				return f.oldNodeProvider(t, func(c *ProviderConfig) { c.AcceptRequester = agentAccepts(f.n2.UniqueID) })
			},
			want: "not accepted", is: ErrWrongRole},
		{name: "provider ID below threshold", leg: agentToNew,
			challenge: func(f *fixture, ch *Challenge) {
				id := signedID(testChain, release.RoleAgent, f.ag.UniqueID, f.kmgKeys[1])
				ch.ProviderID = &id
			},
			want: "provider enclave id: verify agent enclave id " + measure("teeup-agent v1").Short() + ": verify signatures: 1 of 2 required signatures"},
		{name: "provider ID for another MRENCLAVE", leg: agentToNew,
			challenge: func(f *fixture, ch *Challenge) {
				id := signedID(testChain, release.RoleAgent, f.n3.UniqueID, f.kmgKeys...)
				ch.ProviderID = &id
			},
			want: "it is for MRENCLAVE " + measure("teeup-node unreleased").String()},
		{name: "provider role changed on the way", leg: agentToNew,
			challenge: func(_ *fixture, ch *Challenge) { ch.ProviderRole = release.RoleNode },
			want:      `it is for role "agent", not "node"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var p *Provider
			var newRequester func() *Requester
			switch tc.leg {
			case oldToAgent:
				p = f.oldNodeProvider(t)
				newRequester = func() *Requester { return f.agentRequester(t) }
			case agentToNew:
				p = f.agentProvider(t, f.secret)
				newRequester = func() *Requester { return f.newNodeRequester(t) }
			}
			attacked := p
			if tc.provider != nil {
				attacked = tc.provider(t, f)
			}
			r := newRequester()
			ch, err := attacked.Challenge(r.Request())
			if err != nil {
				t.Fatal(err)
			}
			if tc.challenge != nil {
				tc.challenge(f, &ch)
			}
			ans, err := r.Answer(ch)
			if err != nil {
				t.Fatal(err)
			}
			genuine, err := attacked.Deliver(ans)
			if err != nil {
				t.Fatal(err)
			}
			d := genuine
			d.Ciphertext = bytes.Clone(genuine.Ciphertext)
			d.Report = bytes.Clone(genuine.Report)
			if tc.delivery != nil {
				tc.delivery(t, f, ans, &d)
			}
			got, err := r.Receive(d)
			wantErr(t, err, tc.want, tc.is)
			if got != nil {
				t.Fatalf("secret %q returned with the error", got)
			}
			if tc.genuineAfter {
				got, err := r.Receive(genuine)
				if err != nil || !bytes.Equal(got, f.secret) {
					t.Fatalf("genuine delivery after a refused one: %q, %v", got, err)
				}
				return
			}
			mustExchange(t, p, newRequester(), f.secret)
		})
	}
}

func TestRequesterOneShot(t *testing.T) {
	f := newFixture(t)
	p := f.oldNodeProvider(t)
	r := f.agentRequester(t)

	_, err := r.Receive(Delivery{})
	wantErr(t, err, "no challenge answered yet", ErrNotAnswered)

	ch, err := p.Challenge(r.Request())
	if err != nil {
		t.Fatal(err)
	}
	ans, err := r.Answer(ch)
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := p.Challenge(r.Request())
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Answer(ch2)
	wantErr(t, err, "already answered", ErrAlreadyAnswered)

	d, err := p.Deliver(ans)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Receive(d)
	if err != nil || !bytes.Equal(got, f.secret) {
		t.Fatalf("Receive = %q, %v", got, err)
	}
	got, err = r.Receive(d)
	wantErr(t, err, "already received", ErrAlreadyReceived)
	if got != nil {
		t.Fatal("second Receive returned the secret")
	}
	_, err = r.Answer(ch2)
	wantErr(t, err, "already received", ErrAlreadyReceived)
}

// TestBothLegsInMemory is the full handover with the state machines alone:
// old node → agent → new node.
func TestBothLegsInMemory(t *testing.T) {
	f := newFixture(t)
	agentGot, err := exchange(f.oldNodeProvider(t), f.agentRequester(t))
	if err != nil {
		t.Fatalf("old node → agent: %v", err)
	}
	if !bytes.Equal(agentGot, f.secret) {
		t.Fatalf("agent got %q", agentGot)
	}
	nodeGot, err := exchange(f.agentProvider(t, agentGot), f.newNodeRequester(t))
	if err != nil {
		t.Fatalf("agent → new node: %v", err)
	}
	if !bytes.Equal(nodeGot, f.secret) {
		t.Fatalf("new node got %q", nodeGot)
	}
}
