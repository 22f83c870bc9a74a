package handover

import (
	"bytes"
	"crypto/hpke"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Defaults of ProviderConfig.
const (
	// DefaultTTL is how long a challenge stays valid.
	DefaultTTL = 30 * time.Second
	// DefaultMaxOutstanding bounds the challenges a provider remembers.
	DefaultMaxOutstanding = 16
)

// Errors of the provider, to be matched with errors.Is.
var (
	// ErrUnknownNonce means an Answer names a nonce the provider did not
	// issue or already consumed (a replay).
	ErrUnknownNonce = errors.New("unknown or already used nonce")
	// ErrChallengeExpired means the challenge's lifetime had passed.
	ErrChallengeExpired = errors.New("challenge expired")
	// ErrTooManyChallenges means the provider already has the maximum
	// number of unanswered, unexpired challenges.
	ErrTooManyChallenges = errors.New("too many outstanding challenges")
)

// ProviderConfig configures the side of an exchange that holds the secret.
type ProviderConfig struct {
	// Enclave is the provider's own enclave; it verifies the requester's
	// report and makes the delivery report.
	Enclave tee.Enclave
	// ChainID is the network's chain id.
	ChainID string
	// KMG is the Key Management Group that signs enclave IDs.
	KMG release.Group
	// Role is the provider's own role (node or agent).
	Role release.Role
	// ID is the provider's own network-signed enclave ID, sent in every
	// challenge; nil if it has none (the old node may not). When set, it
	// must be valid under KMG for ChainID, Role and the enclave's MRENCLAVE.
	ID *release.EnclaveID
	// Secret is what to hand over: 1 to MaxSecretSize bytes. It is copied.
	Secret []byte
	// Height returns the current chain height for challenges; nil means 0.
	Height func() uint64
	// TTL is a challenge's lifetime; 0 means DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// AcceptRequester decides who may receive the secret. It is called only
	// after the report's MAC, freshness, single use and binding were checked
	// and the requester's enclave ID was verified under KMG for (ChainID,
	// role, the report's MRENCLAVE). It is required. Typically the old node
	// accepts only the agent role and no Debug identity; the agent accepts
	// only the node role with the staged release's node MRENCLAVE.
	AcceptRequester func(role release.Role, id tee.Identity) error
	// MaxOutstanding bounds unanswered challenges; 0 means
	// DefaultMaxOutstanding. Beyond it Challenge refuses.
	MaxOutstanding int
}

// pending is an issued challenge awaiting its Answer.
type pending struct {
	expiry time.Time
	role   release.Role
}

// Provider is the state machine of the side that holds the secret. It does
// no I/O. Its methods are safe for concurrent use, so one provider can serve
// several connections.
type Provider struct {
	cfg        ProviderConfig
	targetInfo []byte

	mu          sync.Mutex
	outstanding map[[NonceSize]byte]pending
}

// NewProvider checks cfg, applies its defaults and returns a provider.
func NewProvider(cfg ProviderConfig) (*Provider, error) {
	if cfg.Enclave == nil {
		return nil, errors.New("new provider: no enclave")
	}
	if err := checkChainID(cfg.ChainID); err != nil {
		return nil, fmt.Errorf("new provider: %w", err)
	}
	if err := cfg.KMG.Validate(); err != nil {
		return nil, fmt.Errorf("new provider: key management group: %w", err)
	}
	if err := cfg.Role.Validate(); err != nil {
		return nil, fmt.Errorf("new provider: %w", err)
	}
	if len(cfg.Secret) == 0 {
		return nil, errors.New("new provider: secret is empty")
	}
	if len(cfg.Secret) > MaxSecretSize {
		return nil, fmt.Errorf("new provider: secret is %d bytes, at most %d", len(cfg.Secret), MaxSecretSize)
	}
	if cfg.TTL < 0 {
		return nil, fmt.Errorf("new provider: negative challenge TTL %v", cfg.TTL)
	}
	if cfg.MaxOutstanding < 0 {
		return nil, fmt.Errorf("new provider: negative MaxOutstanding %d", cfg.MaxOutstanding)
	}
	if cfg.AcceptRequester == nil {
		return nil, errors.New("new provider: AcceptRequester is required (it decides who receives the secret)")
	}
	self := cfg.Enclave.Identity()
	if cfg.ID != nil {
		if err := cfg.ID.Verify(cfg.KMG, cfg.ChainID, cfg.Role, self.UniqueID); err != nil {
			return nil, fmt.Errorf("new provider: own enclave id: %w", err)
		}
		if _, err := encodeID(*cfg.ID); err != nil {
			return nil, fmt.Errorf("new provider: own enclave id: %w", err)
		}
		cfg.ID = cloneID(cfg.ID)
	}
	ti, err := cfg.Enclave.TargetInfo()
	if err != nil {
		return nil, fmt.Errorf("new provider: target info: %w", err)
	}
	if err := checkBytes("target info", ti, MaxTargetInfoSize); err != nil {
		return nil, fmt.Errorf("new provider: %w", err)
	}
	cfg.Secret = bytes.Clone(cfg.Secret)
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.MaxOutstanding == 0 {
		cfg.MaxOutstanding = DefaultMaxOutstanding
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Provider{cfg: cfg, targetInfo: ti, outstanding: make(map[[NonceSize]byte]pending)}, nil
}

// Challenge answers a Request with a fresh challenge and remembers its nonce
// until it is answered or expires. It refuses an invalid role and, with
// ErrTooManyChallenges, a request beyond MaxOutstanding unexpired challenges.
func (p *Provider) Challenge(req Request) (Challenge, error) {
	if err := req.RequesterRole.Validate(); err != nil {
		return Challenge{}, fmt.Errorf("challenge: requester %w", err)
	}
	var nonce [NonceSize]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return Challenge{}, fmt.Errorf("challenge: nonce: %w", err)
	}
	var height uint64
	if p.cfg.Height != nil {
		height = p.cfg.Height()
	}
	now := p.cfg.Now()
	expiry := now.Add(p.cfg.TTL)

	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.outstanding) >= p.cfg.MaxOutstanding {
		for n, c := range p.outstanding {
			if !now.Before(c.expiry) {
				delete(p.outstanding, n)
			}
		}
	}
	if len(p.outstanding) >= p.cfg.MaxOutstanding {
		return Challenge{}, fmt.Errorf("challenge: %w (%d); try again later", ErrTooManyChallenges, p.cfg.MaxOutstanding)
	}
	p.outstanding[nonce] = pending{expiry: expiry, role: req.RequesterRole}
	return Challenge{
		Nonce:              nonce,
		ChainID:            p.cfg.ChainID,
		Height:             height,
		Expiry:             expiry.UnixNano(),
		ProviderTargetInfo: bytes.Clone(p.targetInfo),
		ProviderRole:       p.cfg.Role,
		ProviderID:         cloneID(p.cfg.ID),
	}, nil
}

// Outstanding returns the number of challenges awaiting an Answer,
// including expired ones not yet pruned.
func (p *Provider) Outstanding() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.outstanding)
}

// Deliver checks an Answer and, if every check passes, returns the secret
// sealed to the requester's one-time key. The nonce is consumed by the first
// Answer that names it, whether or not that Answer verifies, so a nonce is
// never usable twice. The checks, in order: the nonce is known
// (ErrUnknownNonce) and not expired (ErrChallengeExpired); the report
// verifies as made for this enclave on this platform; its data binds the
// nonce, chain id, requested role and one-time key; the one-time key is a
// valid X25519 key; the requester's enclave ID is valid under KMG for the
// chain, the role and the report's MRENCLAVE; AcceptRequester accepts.
func (p *Provider) Deliver(ans Answer) (Delivery, error) {
	p.mu.Lock()
	c, ok := p.outstanding[ans.Nonce]
	delete(p.outstanding, ans.Nonce)
	p.mu.Unlock()
	if !ok {
		return Delivery{}, fmt.Errorf("deliver: %w", ErrUnknownNonce)
	}
	if now := p.cfg.Now(); !now.Before(c.expiry) {
		return Delivery{}, fmt.Errorf("deliver: %w at %s (now %s)", ErrChallengeExpired, c.expiry.UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	rep, err := p.cfg.Enclave.VerifyLocalReport(ans.Report)
	if err != nil {
		return Delivery{}, fmt.Errorf("deliver: requester report: %w", err)
	}
	if !rep.Data.Equal(BindAnswer(ans.Nonce, p.cfg.ChainID, c.role, ans.OneTimeKey)) {
		return Delivery{}, fmt.Errorf("deliver: requester report data does not bind this nonce, chain id %q, role %q and one-time key", p.cfg.ChainID, c.role)
	}
	if len(ans.OneTimeKey) != OneTimeKeySize {
		return Delivery{}, fmt.Errorf("deliver: malformed one-time key: %d bytes, want %d", len(ans.OneTimeKey), OneTimeKeySize)
	}
	pub, err := suiteKEM().NewPublicKey(ans.OneTimeKey)
	if err != nil {
		return Delivery{}, fmt.Errorf("deliver: malformed one-time key: %w", err)
	}
	if err := ans.RequesterID.Verify(p.cfg.KMG, p.cfg.ChainID, c.role, rep.Identity.UniqueID); err != nil {
		return Delivery{}, fmt.Errorf("deliver: requester enclave id: %w", err)
	}
	if err := p.cfg.AcceptRequester(c.role, rep.Identity); err != nil {
		return Delivery{}, fmt.Errorf("deliver: requester %s (%s) not accepted: %w", c.role, rep.Identity, err)
	}
	info := sealInfo(ans.Nonce, p.cfg.ChainID,
		party{role: p.cfg.Role, mrenclave: p.cfg.Enclave.Identity().UniqueID},
		party{role: c.role, mrenclave: rep.Identity.UniqueID})
	ct, err := hpke.Seal(pub, suiteKDF(), suiteAEAD(), info, p.cfg.Secret)
	if err != nil {
		// X25519 refuses low-order points, whose shared secret is all zeros.
		return Delivery{}, fmt.Errorf("deliver: malformed one-time key: seal: %w", err)
	}
	report, err := p.cfg.Enclave.LocalReport(ans.RequesterTargetInfo, BindDelivery(ans.Nonce, sha256.Sum256(ct)))
	if err != nil {
		return Delivery{}, fmt.Errorf("deliver: report for the requester: %w", err)
	}
	return Delivery{Nonce: ans.Nonce, Ciphertext: ct, Report: report}, nil
}

// cloneID returns a deep copy of id, or nil.
func cloneID(id *release.EnclaveID) *release.EnclaveID {
	if id == nil {
		return nil
	}
	c := *id
	c.Signatures = append([]release.Signature(nil), id.Signatures...)
	return &c
}
