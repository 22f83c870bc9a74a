package handover

import (
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Errors of the requester, to be matched with errors.Is.
var (
	// ErrNotAnswered means Receive was called before a challenge was answered.
	ErrNotAnswered = errors.New("no challenge answered yet")
	// ErrAlreadyAnswered means Answer was called a second time; a requester
	// answers one challenge (make a new Requester to retry).
	ErrAlreadyAnswered = errors.New("a challenge was already answered; use a new requester to retry")
	// ErrAlreadyReceived means the secret was already received.
	ErrAlreadyReceived = errors.New("the secret was already received")
)

// RequesterConfig configures the side of an exchange that wants the secret.
type RequesterConfig struct {
	// Enclave is the requester's own enclave; it makes the answer report
	// and verifies the delivery report.
	Enclave tee.Enclave
	// ChainID is the network's chain id.
	ChainID string
	// KMG is the Key Management Group that signs enclave IDs.
	KMG release.Group
	// Role is the requester's own role (agent or node).
	Role release.Role
	// ID is the requester's own network-signed enclave ID. It must be valid
	// under KMG for ChainID, Role and the enclave's MRENCLAVE.
	ID release.EnclaveID
	// AcceptProvider decides whether the provider that delivered is
	// acceptable, from the identity in its verified delivery report. It is
	// called last, after every cryptographic check passed (so the role is
	// the one the provider sealed under). When the challenge carried a
	// provider ID, it was verified under KMG for (ChainID, role, the
	// report's MRENCLAVE); providerID is nil when there was none. It is
	// required. Typically the agent
	// fetching from the old node accepts only the MRENCLAVE of the node it
	// supervises; the new node accepts only a provider with an agent ID.
	AcceptProvider func(role release.Role, id tee.Identity, providerID *release.EnclaveID) error
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// requesterState is where a requester is in its one exchange.
type requesterState uint8

const (
	stateIdle requesterState = iota
	stateAnswered
	stateDone
)

// Requester is the state machine of the side that wants the secret. It
// does no I/O and runs one exchange: Request, Answer, Receive. Its methods
// are safe for concurrent use.
type Requester struct {
	cfg RequesterConfig

	mu           sync.Mutex
	state        requesterState
	nonce        [NonceSize]byte
	providerRole release.Role
	providerID   *release.EnclaveID
	key          hpke.PrivateKey
}

// NewRequester checks cfg, applies its defaults and returns a requester.
func NewRequester(cfg RequesterConfig) (*Requester, error) {
	if cfg.Enclave == nil {
		return nil, errors.New("new requester: no enclave")
	}
	if err := checkChainID(cfg.ChainID); err != nil {
		return nil, fmt.Errorf("new requester: %w", err)
	}
	if err := cfg.KMG.Validate(); err != nil {
		return nil, fmt.Errorf("new requester: key management group: %w", err)
	}
	if err := cfg.Role.Validate(); err != nil {
		return nil, fmt.Errorf("new requester: %w", err)
	}
	if cfg.AcceptProvider == nil {
		return nil, errors.New("new requester: AcceptProvider is required (it decides whose secret to trust)")
	}
	if err := cfg.ID.Verify(cfg.KMG, cfg.ChainID, cfg.Role, cfg.Enclave.Identity().UniqueID); err != nil {
		return nil, fmt.Errorf("new requester: own enclave id: %w", err)
	}
	if _, err := encodeID(cfg.ID); err != nil {
		return nil, fmt.Errorf("new requester: own enclave id: %w", err)
	}
	cfg.ID = *cloneID(&cfg.ID)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Requester{cfg: cfg}, nil
}

// Request returns the key request that starts the exchange.
func (r *Requester) Request() Request { return Request{RequesterRole: r.cfg.Role} }

// Answer checks a challenge (chain id, expiry, provider role and target
// info), makes a fresh one-time HPKE key pair, kept for Receive, and returns
// the answer with a local report for the provider binding the nonce, chain
// id, own role and one-time public key. A failed Answer changes nothing.
func (r *Requester) Answer(ch Challenge) (Answer, error) {
	if ch.ChainID != r.cfg.ChainID {
		return Answer{}, fmt.Errorf("answer challenge: it is for chain %q, this requester is on %q", ch.ChainID, r.cfg.ChainID)
	}
	if now := r.cfg.Now(); !now.Before(time.Unix(0, ch.Expiry)) {
		return Answer{}, fmt.Errorf("answer challenge: %w at %s (now %s)", ErrChallengeExpired, time.Unix(0, ch.Expiry).UTC().Format(time.RFC3339Nano), now.UTC().Format(time.RFC3339Nano))
	}
	if err := ch.ProviderRole.Validate(); err != nil {
		return Answer{}, fmt.Errorf("answer challenge: provider %w", err)
	}
	if err := checkBytes("provider target info", ch.ProviderTargetInfo, MaxTargetInfoSize); err != nil {
		return Answer{}, fmt.Errorf("answer challenge: %w", err)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case stateAnswered:
		return Answer{}, fmt.Errorf("answer challenge: %w", ErrAlreadyAnswered)
	case stateDone:
		return Answer{}, fmt.Errorf("answer challenge: %w", ErrAlreadyReceived)
	}
	key, err := suiteKEM().GenerateKey()
	if err != nil {
		return Answer{}, fmt.Errorf("answer challenge: one-time key: %w", err)
	}
	pub := key.PublicKey().Bytes()
	report, err := r.cfg.Enclave.LocalReport(ch.ProviderTargetInfo, BindAnswer(ch.Nonce, r.cfg.ChainID, r.cfg.Role, pub))
	if err != nil {
		return Answer{}, fmt.Errorf("answer challenge: report for the provider: %w", err)
	}
	ti, err := r.cfg.Enclave.TargetInfo()
	if err != nil {
		return Answer{}, fmt.Errorf("answer challenge: own target info: %w", err)
	}
	r.state = stateAnswered
	r.nonce = ch.Nonce
	r.providerRole = ch.ProviderRole
	r.providerID = cloneID(ch.ProviderID)
	r.key = key
	return Answer{
		Nonce:               ch.Nonce,
		RequesterTargetInfo: ti,
		OneTimeKey:          pub,
		Report:              report,
		RequesterID:         *cloneID(&r.cfg.ID),
	}, nil
}

// Receive checks a delivery and returns the secret: the nonce is the
// answered challenge's; the report verifies as made for this enclave on this
// platform and binds SHA-256 of the ciphertext; the provider's enclave ID,
// if the challenge carried one, is valid under KMG for the chain, the
// provider's role and the report's MRENCLAVE; the ciphertext opens under
// this exchange's nonce, chain id, roles and measurements; AcceptProvider
// accepts. It succeeds once: later calls fail with
// ErrAlreadyReceived. A failed Receive changes nothing, so the genuine
// delivery can still be received.
func (r *Requester) Receive(d Delivery) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch r.state {
	case stateIdle:
		return nil, fmt.Errorf("receive: %w", ErrNotAnswered)
	case stateDone:
		return nil, fmt.Errorf("receive: %w", ErrAlreadyReceived)
	}
	if d.Nonce != r.nonce {
		return nil, errors.New("receive: the delivery is for another challenge's nonce")
	}
	rep, err := r.cfg.Enclave.VerifyLocalReport(d.Report)
	if err != nil {
		return nil, fmt.Errorf("receive: provider report: %w", err)
	}
	if !rep.Data.Equal(BindDelivery(r.nonce, sha256.Sum256(d.Ciphertext))) {
		return nil, errors.New("receive: provider report data does not bind this nonce and ciphertext (the delivery was altered)")
	}
	if r.providerID != nil {
		if err := r.providerID.Verify(r.cfg.KMG, r.cfg.ChainID, r.providerRole, rep.Identity.UniqueID); err != nil {
			return nil, fmt.Errorf("receive: provider enclave id: %w", err)
		}
	}
	// The provider sealed under its own role and both measurements: opening
	// with the role the challenge claimed authenticates that claim too.
	info := sealInfo(r.nonce, r.cfg.ChainID,
		party{role: r.providerRole, mrenclave: rep.Identity.UniqueID},
		party{role: r.cfg.Role, mrenclave: r.cfg.Enclave.Identity().UniqueID})
	secret, err := hpke.Open(r.key, suiteKDF(), suiteAEAD(), info, d.Ciphertext)
	if err != nil {
		return nil, fmt.Errorf("receive: open the sealed secret (sealed for another exchange, or the provider's role was altered): %w", err)
	}
	if err := r.cfg.AcceptProvider(r.providerRole, rep.Identity, cloneID(r.providerID)); err != nil {
		return nil, fmt.Errorf("receive: provider %s (%s) not accepted: %w", r.providerRole, rep.Identity, err)
	}
	r.state = stateDone
	r.key = nil
	r.providerID = nil
	return secret, nil
}
