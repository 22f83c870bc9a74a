package handover

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

const testChain = "teeup-test-1"

// fakeClock is an injectable clock tests advance by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fixture is one CA and two platforms. On platform A run the old node (N1),
// the agent (AG), the new node (N2, the staged release) and an unreleased
// node (N3); on platform B runs a copy of the agent.
type fixture struct {
	platA, platB *sim.Platform

	kmgKeys  []ed25519.PrivateKey // 3 members, threshold 2
	outsider ed25519.PrivateKey
	kmg      release.Group

	n1, ag, n2, n3 tee.Identity
	oldNode        *sim.Enclave // N1 on A
	agent          *sim.Enclave // AG on A
	newNode        *sim.Enclave // N2 on A
	otherNode      *sim.Enclave // N3 on A
	agentB         *sim.Enclave // AG on B

	agID, n2ID, n3ID release.EnclaveID

	clock  *fakeClock
	secret []byte
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{clock: &fakeClock{t: time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)}}
	if f.platA, err = sim.InitPlatform(filepath.Join(dir, "a"), ca); err != nil {
		t.Fatal(err)
	}
	if f.platB, err = sim.InitPlatform(filepath.Join(dir, "b"), ca); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		f.kmgKeys = append(f.kmgKeys, testKey(byte(i+1)))
	}
	f.outsider = testKey(0x77)
	f.kmg = release.Group{Threshold: 2}
	for _, k := range f.kmgKeys {
		f.kmg.Keys = append(f.kmg.Keys, hex.EncodeToString(k.Public().(ed25519.PublicKey)))
	}
	signer := sim.SignerIDOf(testKey(0x55).Public().(ed25519.PublicKey))
	ident := func(name string, product uint16) tee.Identity {
		return tee.Identity{UniqueID: measure(name), SignerID: signer, ProductID: product, SecurityVersion: 1}
	}
	f.n1, f.ag, f.n2, f.n3 = ident("teeup-node v1", 1), ident("teeup-agent v1", 2), ident("teeup-node v2", 1), ident("teeup-node unreleased", 1)
	f.oldNode = f.platA.NewEnclave(f.n1)
	f.agent = f.platA.NewEnclave(f.ag)
	f.newNode = f.platA.NewEnclave(f.n2)
	f.otherNode = f.platA.NewEnclave(f.n3)
	f.agentB = f.platB.NewEnclave(f.ag)
	two := f.kmgKeys[:2]
	f.agID = signedID(testChain, release.RoleAgent, f.ag.UniqueID, two...)
	f.n2ID = signedID(testChain, release.RoleNode, f.n2.UniqueID, two...)
	f.n3ID = signedID(testChain, release.RoleNode, f.n3.UniqueID, two...)
	f.secret = []byte("node identity key + ledger key: 0123456789abcdef")
	return f
}

// measure returns the fixture's MRENCLAVE for an enclave name.
func measure(name string) tee.Measurement { return sha256.Sum256([]byte(name)) }

// testKey returns a deterministic ed25519 key with every seed byte b.
func testKey(b byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
}

// signedID returns an enclave ID signed by keys.
func signedID(network string, role release.Role, m tee.Measurement, keys ...ed25519.PrivateKey) release.EnclaveID {
	id := release.EnclaveID{NetworkID: network, Role: role, MREnclave: m, Signatures: []release.Signature{}}
	for _, k := range keys {
		id.Signatures = append(id.Signatures, release.Signature{
			Key: hex.EncodeToString(k.Public().(ed25519.PublicKey)),
			Sig: hex.EncodeToString(ed25519.Sign(k, id.SigningBytes())),
		})
	}
	return id
}

// The legs' acceptance rules are teeup's own (accept.go): the old node
// hands its keys to a non-debug agent, the agent to the staged release's
// node, the agent takes them from the node it supervises and the new node
// from a network-signed agent.
func oldNodeAccepts(role release.Role, id tee.Identity) error {
	return AgentPeer(false).AcceptRequester(role, id)
}

func agentAccepts(staged tee.Measurement) func(release.Role, tee.Identity) error {
	return NodePeer(staged, false).AcceptRequester
}

func supervisedIs(m tee.Measurement) func(release.Role, tee.Identity, *release.EnclaveID) error {
	return NodePeer(m, false).AcceptProvider
}

func newNodeAccepts(role release.Role, id tee.Identity, pid *release.EnclaveID) error {
	return AgentPeer(false).AcceptProvider(role, id, pid)
}

// oldNodeProvider is N1 handing its secret to the agent.
func (f *fixture) oldNodeProvider(t testing.TB, mods ...func(*ProviderConfig)) *Provider {
	t.Helper()
	cfg := ProviderConfig{
		Enclave: f.oldNode, ChainID: testChain, KMG: f.kmg, Role: release.RoleNode,
		Secret: f.secret, Height: func() uint64 { return 42 }, Now: f.clock.Now,
		AcceptRequester: oldNodeAccepts,
	}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := NewProvider(cfg)
	if err != nil {
		t.Fatalf("NewProvider: %v", err)
	}
	return p
}

// agentProvider is the agent handing secret to the new node.
func (f *fixture) agentProvider(t testing.TB, secret []byte, mods ...func(*ProviderConfig)) *Provider {
	t.Helper()
	id := f.agID
	cfg := ProviderConfig{
		Enclave: f.agent, ChainID: testChain, KMG: f.kmg, Role: release.RoleAgent, ID: &id,
		Secret: secret, Now: f.clock.Now, AcceptRequester: agentAccepts(f.n2.UniqueID),
	}
	for _, m := range mods {
		m(&cfg)
	}
	p, err := NewProvider(cfg)
	if err != nil {
		t.Fatalf("NewProvider: %v", err)
	}
	return p
}

// agentRequester is the agent fetching from the old node.
func (f *fixture) agentRequester(t testing.TB, mods ...func(*RequesterConfig)) *Requester {
	t.Helper()
	cfg := RequesterConfig{
		Enclave: f.agent, ChainID: testChain, KMG: f.kmg, Role: release.RoleAgent, ID: f.agID,
		AcceptProvider: supervisedIs(f.n1.UniqueID), Now: f.clock.Now,
	}
	for _, m := range mods {
		m(&cfg)
	}
	r, err := NewRequester(cfg)
	if err != nil {
		t.Fatalf("NewRequester: %v", err)
	}
	return r
}

// newNodeRequester is the new node fetching from the agent.
func (f *fixture) newNodeRequester(t testing.TB, mods ...func(*RequesterConfig)) *Requester {
	t.Helper()
	cfg := RequesterConfig{
		Enclave: f.newNode, ChainID: testChain, KMG: f.kmg, Role: release.RoleNode, ID: f.n2ID,
		AcceptProvider: newNodeAccepts, Now: f.clock.Now,
	}
	for _, m := range mods {
		m(&cfg)
	}
	r, err := NewRequester(cfg)
	if err != nil {
		t.Fatalf("NewRequester: %v", err)
	}
	return r
}

// exchange runs one leg in memory.
func exchange(p *Provider, r *Requester) ([]byte, error) {
	ch, err := p.Challenge(r.Request())
	if err != nil {
		return nil, err
	}
	ans, err := r.Answer(ch)
	if err != nil {
		return nil, err
	}
	d, err := p.Deliver(ans)
	if err != nil {
		return nil, err
	}
	return r.Receive(d)
}

// mustExchange runs one leg and checks that want arrives.
func mustExchange(t testing.TB, p *Provider, r *Requester, want []byte) {
	t.Helper()
	got, err := exchange(p, r)
	if err != nil {
		t.Fatalf("correct exchange failed: %v", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("secret = %q, want %q", got, want)
	}
}

// wantErr checks that err is non-nil, contains want and, if is is set,
// matches it with errors.Is.
func wantErr(t testing.TB, err error, want string, is error) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
	if is != nil && !errors.Is(err, is) {
		t.Fatalf("error %q is not %v", err, is)
	}
}

// flip returns a copy of b with the byte at off (negative: from the end)
// XORed with 1.
func flip(b []byte, off int) []byte {
	b = bytes.Clone(b)
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 1
	return b
}

// mustTargetInfo returns e's target info.
func mustTargetInfo(t testing.TB, e tee.Enclave) []byte {
	t.Helper()
	ti, err := e.TargetInfo()
	if err != nil {
		t.Fatal(err)
	}
	return ti
}
