package handover

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// brokenEnclave is an enclave whose TargetInfo fails.
type brokenEnclave struct{ tee.Enclave }

func (brokenEnclave) TargetInfo() ([]byte, error) { return nil, errors.New("platform unavailable") }

func TestNewProviderRejects(t *testing.T) {
	f := newFixture(t)
	badThreshold := f.kmg
	badThreshold.Threshold = 4
	tests := []struct {
		name string
		mod  func(*ProviderConfig)
		want string
	}{
		{"no enclave", func(c *ProviderConfig) { c.Enclave = nil }, "no enclave"},
		{"empty chain id", func(c *ProviderConfig) { c.ChainID = "" }, "chain id is empty"},
		{"chain id too long", func(c *ProviderConfig) { c.ChainID = strings.Repeat("c", MaxChainIDLen+1) }, "chain id is 65 bytes"},
		{"group without keys", func(c *ProviderConfig) { c.KMG = release.Group{Threshold: 1} }, "group has no keys"},
		{"group threshold above keys", func(c *ProviderConfig) { c.KMG = badThreshold }, "threshold 4"},
		{"unknown role", func(c *ProviderConfig) { c.Role = "miner" }, `role "miner"`},
		{"empty secret", func(c *ProviderConfig) { c.Secret = nil }, "secret is empty"},
		{"secret too large", func(c *ProviderConfig) { c.Secret = make([]byte, MaxSecretSize+1) }, "secret is 262145 bytes"},
		{"negative TTL", func(c *ProviderConfig) { c.TTL = -time.Second }, "negative challenge TTL"},
		{"negative MaxOutstanding", func(c *ProviderConfig) { c.MaxOutstanding = -1 }, "negative MaxOutstanding"},
		{"no AcceptRequester", func(c *ProviderConfig) { c.AcceptRequester = nil }, "AcceptRequester is required"},
		{"own ID below threshold", func(c *ProviderConfig) {
			id := signedID(testChain, release.RoleNode, f.n1.UniqueID, f.kmgKeys[0])
			c.ID = &id
		}, "1 of 2 required signatures"},
		{"own ID for another MRENCLAVE", func(c *ProviderConfig) { id := f.n2ID; c.ID = &id }, "for MRENCLAVE"},
		{"own ID for another role", func(c *ProviderConfig) {
			id := signedID(testChain, release.RoleAgent, f.n1.UniqueID, f.kmgKeys...)
			c.ID = &id
		}, `for role "agent", not "node"`},
		{"target info fails", func(c *ProviderConfig) { c.Enclave = brokenEnclave{f.oldNode} }, "platform unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ProviderConfig{
				Enclave: f.oldNode, ChainID: testChain, KMG: f.kmg, Role: release.RoleNode,
				Secret: f.secret, AcceptRequester: oldNodeAccepts,
			}
			tc.mod(&cfg)
			p, err := NewProvider(cfg)
			wantErr(t, err, tc.want, nil)
			if p != nil {
				t.Fatal("provider returned with the error")
			}
		})
	}
}

func TestProviderCopiesSecret(t *testing.T) {
	f := newFixture(t)
	secret := bytes.Clone(f.secret)
	p := f.oldNodeProvider(t, func(c *ProviderConfig) { c.Secret = secret })
	secret[0] ^= 0xff
	mustExchange(t, p, f.agentRequester(t), f.secret)
}

func TestChallengeContent(t *testing.T) {
	f := newFixture(t)
	p := f.oldNodeProvider(t)
	ch1, err := p.Challenge(Request{RequesterRole: release.RoleAgent})
	if err != nil {
		t.Fatal(err)
	}
	ch2, err := p.Challenge(Request{RequesterRole: release.RoleAgent})
	if err != nil {
		t.Fatal(err)
	}
	if ch1.Nonce == ch2.Nonce || ch1.Nonce == ([NonceSize]byte{}) {
		t.Fatalf("nonces not fresh: %x %x", ch1.Nonce, ch2.Nonce)
	}
	if ch1.ChainID != testChain || ch1.Height != 42 || ch1.ProviderRole != release.RoleNode || ch1.ProviderID != nil {
		t.Fatalf("challenge = %+v", ch1)
	}
	if want := f.clock.Now().Add(DefaultTTL).UnixNano(); ch1.Expiry != want {
		t.Fatalf("expiry %d, want %d", ch1.Expiry, want)
	}
	if !bytes.Equal(ch1.ProviderTargetInfo, mustTargetInfo(t, f.oldNode)) {
		t.Fatal("target info is not the provider enclave's")
	}
	if p.Outstanding() != 2 {
		t.Fatalf("outstanding = %d, want 2", p.Outstanding())
	}

	// The agent's challenges carry its ID; changing a returned copy must
	// not change what later challenges carry.
	ap := f.agentProvider(t, f.secret)
	ch, err := ap.Challenge(Request{RequesterRole: release.RoleNode})
	if err != nil {
		t.Fatal(err)
	}
	if ch.ProviderID == nil || ch.ProviderID.MREnclave != f.ag.UniqueID || ch.ProviderID.Role != release.RoleAgent {
		t.Fatalf("agent challenge provider id = %+v", ch.ProviderID)
	}
	ch.ProviderID.Signatures[0].Sig = "00"
	ch.ProviderID.MREnclave = f.n3.UniqueID
	mustExchange(t, ap, f.newNodeRequester(t), f.secret)
}

func TestChallengeRejectsBadRole(t *testing.T) {
	f := newFixture(t)
	p := f.oldNodeProvider(t)
	for _, role := range []release.Role{"", "Agent", "operator"} {
		_, err := p.Challenge(Request{RequesterRole: role})
		wantErr(t, err, "challenge: requester role", nil)
	}
	if n := p.Outstanding(); n != 0 {
		t.Fatalf("refused requests left %d outstanding challenges", n)
	}
}

func TestTooManyOutstanding(t *testing.T) {
	f := newFixture(t)
	p := f.oldNodeProvider(t, func(c *ProviderConfig) { c.MaxOutstanding = 3 })
	req := Request{RequesterRole: release.RoleAgent}
	var first Challenge
	for i := range 3 {
		ch, err := p.Challenge(req)
		if err != nil {
			t.Fatalf("challenge %d: %v", i, err)
		}
		if i == 0 {
			first = ch
		}
	}
	_, err := p.Challenge(req)
	wantErr(t, err, "too many outstanding challenges (3)", ErrTooManyChallenges)
	if p.Outstanding() != 3 {
		t.Fatalf("outstanding = %d after refusal, want 3", p.Outstanding())
	}

	// Answering one frees its slot.
	r := f.agentRequester(t)
	ans, err := r.Answer(first)
	if err != nil {
		t.Fatal(err)
	}
	d, err := p.Deliver(ans)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := r.Receive(d); err != nil || !bytes.Equal(got, f.secret) {
		t.Fatalf("Receive = %q, %v", got, err)
	}
	mustExchange(t, p, f.agentRequester(t), f.secret)
	if _, err := p.Challenge(req); err != nil {
		t.Fatalf("challenge after a slot was freed: %v", err)
	}
	_, err = p.Challenge(req)
	wantErr(t, err, "too many", ErrTooManyChallenges)

	// Expired challenges make room.
	f.clock.Advance(DefaultTTL)
	mustExchange(t, p, f.agentRequester(t), f.secret)
	if n := p.Outstanding(); n != 0 {
		t.Fatalf("outstanding = %d after expiry and one exchange, want 0", n)
	}
}

// forgeAnswer builds an answer made by enclave e with report data binding
// the given chain id, role and key, presenting id.
func forgeAnswer(t *testing.T, e tee.Enclave, ch Challenge, chain string, role release.Role, key []byte, id release.EnclaveID) Answer {
	t.Helper()
	rep, err := e.LocalReport(ch.ProviderTargetInfo, BindAnswer(ch.Nonce, chain, role, key))
	if err != nil {
		t.Fatal(err)
	}
	return Answer{Nonce: ch.Nonce, RequesterTargetInfo: mustTargetInfo(t, e), OneTimeKey: key, Report: rep, RequesterID: id}
}

// x25519Public returns a fresh X25519 public key.
func x25519Public(t *testing.T) []byte {
	t.Helper()
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k.PublicKey().Bytes()
}

// TestDeliverRejects runs each attack against a provider, checks the
// refusal, then checks that the same provider still serves a correct
// requester.
func TestDeliverRejects(t *testing.T) {
	type leg int
	const (
		oldToAgent leg = iota // the old node provides, the agent requests
		agentToNew            // the agent provides, the new node requests
	)
	challenge := func(t *testing.T, p *Provider, role release.Role) Challenge {
		t.Helper()
		ch, err := p.Challenge(Request{RequesterRole: role})
		if err != nil {
			t.Fatal(err)
		}
		return ch
	}
	answer := func(t *testing.T, p *Provider, r *Requester) Answer {
		t.Helper()
		ch, err := p.Challenge(r.Request())
		if err != nil {
			t.Fatal(err)
		}
		ans, err := r.Answer(ch)
		if err != nil {
			t.Fatal(err)
		}
		return ans
	}
	tests := []struct {
		name   string
		leg    leg
		attack func(t *testing.T, f *fixture, p *Provider) error
		want   string
		is     error
	}{
		{"replayed answer", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			if _, err := p.Deliver(ans); err != nil {
				t.Fatalf("first delivery: %v", err)
			}
			_, err := p.Deliver(ans)
			return err
		}, "unknown or already used nonce", ErrUnknownNonce},
		{"nonce issued by another provider", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			other := f.oldNodeProvider(t)
			_, err := p.Deliver(answer(t, other, f.agentRequester(t)))
			return err
		}, "unknown or already used nonce", ErrUnknownNonce},
		{"failed answer consumes the nonce", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			bad := ans
			bad.Report = flip(ans.Report, 10)
			if _, err := p.Deliver(bad); err == nil {
				t.Fatal("tampered answer delivered")
			}
			_, err := p.Deliver(ans)
			return err
		}, "unknown or already used nonce", ErrUnknownNonce},
		{"expired challenge", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			f.clock.Advance(DefaultTTL)
			_, err := p.Deliver(ans)
			return err
		}, "challenge expired", ErrChallengeExpired},
		{"report made for another target", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			rep, err := f.agent.LocalReport(mustTargetInfo(t, f.newNode), BindAnswer(ans.Nonce, testChain, release.RoleAgent, ans.OneTimeKey))
			if err != nil {
				t.Fatal(err)
			}
			ans.Report = rep
			_, err = p.Deliver(ans)
			return err
		}, "made for enclave " + measure("teeup-node v2").String() + ", this enclave is " + measure("teeup-node v1").String(), nil},
		{"report made on another platform", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			r := f.agentRequester(t, func(c *RequesterConfig) { c.Enclave = f.agentB })
			_, err := p.Deliver(answer(t, p, r))
			return err
		}, "MAC does not verify (made on another platform", nil},
		{"tampered report byte", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.Report = flip(ans.Report, 6) // inside the identity
			_, err := p.Deliver(ans)
			return err
		}, "MAC does not verify", nil},
		{"truncated report", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.Report = ans.Report[:len(ans.Report)-1]
			_, err := p.Deliver(ans)
			return err
		}, "requester report", nil},
		{"one-time key swapped after the report", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.OneTimeKey = x25519Public(t)
			_, err := p.Deliver(ans)
			return err
		}, "report data does not bind", nil},
		{"report binds another chain id", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ch := challenge(t, p, release.RoleAgent)
			_, err := p.Deliver(forgeAnswer(t, f.agent, ch, "other-chain", release.RoleAgent, x25519Public(t), f.agID))
			return err
		}, "report data does not bind", nil},
		{"report binds another role than requested", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ch := challenge(t, p, release.RoleAgent)
			_, err := p.Deliver(forgeAnswer(t, f.agent, ch, testChain, release.RoleNode, x25519Public(t), f.agID))
			return err
		}, "report data does not bind", nil},
		{"one-time key of the wrong size", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ch := challenge(t, p, release.RoleAgent)
			_, err := p.Deliver(forgeAnswer(t, f.agent, ch, testChain, release.RoleAgent, x25519Public(t)[:31], f.agID))
			return err
		}, "malformed one-time key: 31 bytes", nil},
		{"one-time key is a low-order point", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ch := challenge(t, p, release.RoleAgent)
			_, err := p.Deliver(forgeAnswer(t, f.agent, ch, testChain, release.RoleAgent, make([]byte, OneTimeKeySize), f.agID))
			return err
		}, "malformed one-time key", nil},
		{"requester ID below threshold", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterID = signedID(testChain, release.RoleAgent, f.ag.UniqueID, f.kmgKeys[0])
			_, err := p.Deliver(ans)
			return err
		}, "1 of 2 required signatures", nil},
		{"requester ID signed by a key outside the group", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterID = signedID(testChain, release.RoleAgent, f.ag.UniqueID, f.kmgKeys[0], f.outsider)
			_, err := p.Deliver(ans)
			return err
		}, "not a member of the group", release.ErrNotMember},
		{"requester ID with a forged signature", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			id := signedID(testChain, release.RoleAgent, f.ag.UniqueID, f.kmgKeys...)
			id.Signatures[1].Sig = hex.EncodeToString(ed25519.Sign(f.kmgKeys[1], []byte("another message")))
			ans.RequesterID = id
			_, err := p.Deliver(ans)
			return err
		}, "signature does not verify", release.ErrBadSignature},
		{"requester ID for another role (node ID presented by the agent)", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterID = signedID(testChain, release.RoleNode, f.ag.UniqueID, f.kmgKeys[:2]...)
			_, err := p.Deliver(ans)
			return err
		}, `it is for role "node", not "agent"`, nil},
		{"requester ID for another MRENCLAVE", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterID = signedID(testChain, release.RoleAgent, f.n3.UniqueID, f.kmgKeys[:2]...)
			_, err := p.Deliver(ans)
			return err
		}, "it is for MRENCLAVE " + measure("teeup-node unreleased").String() + ", not " + measure("teeup-agent v1").String(), nil},
		{"requester ID for another network", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterID = signedID("other-net", release.RoleAgent, f.ag.UniqueID, f.kmgKeys[:2]...)
			_, err := p.Deliver(ans)
			return err
		}, `it is for network "other-net"`, nil},
		{"agent ID presented by another enclave", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ch := challenge(t, p, release.RoleAgent)
			_, err := p.Deliver(forgeAnswer(t, f.otherNode, ch, testChain, release.RoleAgent, x25519Public(t), f.agID))
			return err
		}, "it is for MRENCLAVE " + measure("teeup-agent v1").String() + ", not " + measure("teeup-node unreleased").String(), nil},
		{"AcceptRequester refuses a debug agent", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			debug := f.ag
			debug.Debug = true
			r := f.agentRequester(t, func(c *RequesterConfig) { c.Enclave = f.platA.NewEnclave(debug) })
			_, err := p.Deliver(answer(t, p, r))
			return err
		}, "not accepted", ErrDebugEnclave},
		{"AcceptRequester refuses the new node asking the old node", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			_, err := p.Deliver(answer(t, p, f.newNodeRequester(t)))
			return err
		}, "not accepted", ErrWrongRole},
		{"unusable requester target info", oldToAgent, func(t *testing.T, f *fixture, p *Provider) error {
			ans := answer(t, p, f.agentRequester(t))
			ans.RequesterTargetInfo = []byte("not target info")
			_, err := p.Deliver(ans)
			return err
		}, "report for the requester", nil},
		{"AcceptRequester refuses an unreleased node MRENCLAVE", agentToNew, func(t *testing.T, f *fixture, p *Provider) error {
			r := f.newNodeRequester(t, func(c *RequesterConfig) { c.Enclave = f.otherNode; c.ID = f.n3ID })
			_, err := p.Deliver(answer(t, p, r))
			return err
		}, "not accepted", ErrWrongEnclave},
		{"agent asks the agent", agentToNew, func(t *testing.T, f *fixture, p *Provider) error {
			_, err := p.Deliver(answer(t, p, f.agentRequester(t)))
			return err
		}, "not accepted", ErrWrongRole},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			var p *Provider
			var good func() *Requester
			switch tc.leg {
			case oldToAgent:
				p = f.oldNodeProvider(t)
				good = func() *Requester { return f.agentRequester(t) }
			case agentToNew:
				p = f.agentProvider(t, f.secret)
				good = func() *Requester { return f.newNodeRequester(t) }
			}
			err := tc.attack(t, f, p)
			wantErr(t, err, tc.want, tc.is)
			if n := p.Outstanding(); n != 0 {
				t.Fatalf("%d challenges outstanding after the attack; the nonce was not consumed", n)
			}
			mustExchange(t, p, good(), f.secret)
		})
	}
}
