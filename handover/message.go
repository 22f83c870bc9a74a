package handover

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/teeup/teeup/internal/wire"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
)

// Every encoded message starts with magic, version and its type byte.
const (
	magic         = "THND"
	formatVersion = 1
	headerSize    = len(magic) + 2
)

// Bounds on message fields. Decoding refuses anything larger, so a hostile
// peer can never make a reader allocate more than a frame's worth of bytes.
const (
	// NonceSize is the size of a challenge nonce.
	NonceSize = 32
	// MaxChainIDLen bounds a chain id (the network id of signed enclave IDs).
	MaxChainIDLen = 64
	// MaxTargetInfoSize bounds an enclave's target info (SGX TARGETINFO is 512 bytes).
	MaxTargetInfoSize = 4096
	// MaxReportSize bounds a local report (an SGX report is 432 bytes).
	MaxReportSize = 8192
	// OneTimeKeySize is the size of the requester's X25519 public key.
	OneTimeKeySize = 32
	// MaxSecretSize bounds the secret a provider hands over.
	MaxSecretSize = 256 << 10
	// MaxCiphertextSize bounds a delivery's ciphertext: the HPKE
	// encapsulated key, the sealed secret and the AEAD tag.
	MaxCiphertextSize = OneTimeKeySize + MaxSecretSize + 16
	// MaxReasonLen bounds the reason of a Refusal, in bytes.
	MaxReasonLen = 1024

	maxRoleLen = 16
	// maxEnclaveIDSize bounds an encoded release.EnclaveID: network id,
	// role, MRENCLAVE and up to release.MaxSignatures (key, signature) pairs.
	maxEnclaveIDSize = 4 + MaxChainIDLen + 4 + maxRoleLen + tee.MeasurementSize + 4 +
		release.MaxSignatures*(ed25519.PublicKeySize+ed25519.SignatureSize)
)

// msgType is the type byte of an encoded message and of a transport frame.
type msgType uint8

const (
	typeRequest   msgType = 1
	typeChallenge msgType = 2
	typeAnswer    msgType = 3
	typeDelivery  msgType = 4
	typeRefusal   msgType = 5
)

// String names the message type.
func (t msgType) String() string {
	switch t {
	case typeRequest:
		return "request"
	case typeChallenge:
		return "challenge"
	case typeAnswer:
		return "answer"
	case typeDelivery:
		return "delivery"
	case typeRefusal:
		return "refusal"
	default:
		return fmt.Sprintf("unknown message type %d", uint8(t))
	}
}

// valid reports whether t is a known message type.
func (t msgType) valid() bool { return t >= typeRequest && t <= typeRefusal }

// message is implemented by the five protocol messages.
type message interface {
	msgType() msgType
	MarshalBinary() ([]byte, error)
}

// Request asks a provider for the secret ("key request").
type Request struct {
	// RequesterRole is the role the requester claims; it must prove it with
	// its network-signed enclave ID in the Answer.
	RequesterRole release.Role
}

// Challenge is the provider's nonce challenge.
type Challenge struct {
	// Nonce is fresh and random; the provider accepts one Answer for it.
	Nonce [NonceSize]byte
	// ChainID is the network the provider belongs to.
	ChainID string
	// Height is the provider's current chain height (informational).
	Height uint64
	// Expiry is when the challenge lapses, in Unix nanoseconds.
	Expiry int64
	// ProviderTargetInfo lets the requester make a local report for the provider.
	ProviderTargetInfo []byte
	// ProviderRole is the provider's role.
	ProviderRole release.Role
	// ProviderID is the provider's network-signed enclave ID, if it has one
	// (the agent does; the old node may not).
	ProviderID *release.EnclaveID
}

// Answer is the requester's response to a Challenge.
type Answer struct {
	// Nonce repeats the challenge's nonce.
	Nonce [NonceSize]byte
	// RequesterTargetInfo lets the provider make a local report for the requester.
	RequesterTargetInfo []byte
	// OneTimeKey is the requester's fresh X25519 public key; the secret is
	// sealed to it with HPKE.
	OneTimeKey []byte
	// Report is a local report for the provider whose data is
	// BindAnswer(Nonce, chain id, requester role, OneTimeKey).
	Report []byte
	// RequesterID is the requester's network-signed enclave ID.
	RequesterID release.EnclaveID
}

// Delivery carries the sealed secret.
type Delivery struct {
	// Nonce repeats the challenge's nonce.
	Nonce [NonceSize]byte
	// Ciphertext is the HPKE encapsulated key followed by the sealed secret.
	Ciphertext []byte
	// Report is a local report for the requester whose data is
	// BindDelivery(Nonce, SHA-256(Ciphertext)).
	Report []byte
}

// Refusal tells the other side that a step was refused, and why.
type Refusal struct {
	// Reason is a printable UTF-8 explanation of at most MaxReasonLen bytes.
	Reason string
}

func (Request) msgType() msgType   { return typeRequest }
func (Challenge) msgType() msgType { return typeChallenge }
func (Answer) msgType() msgType    { return typeAnswer }
func (Delivery) msgType() msgType  { return typeDelivery }
func (Refusal) msgType() msgType   { return typeRefusal }

// newEncoder starts a message of type t with room for n more bytes.
func newEncoder(t msgType, n int) *wire.Encoder {
	e := wire.NewEncoder(headerSize + n)
	e.Fixed([]byte(magic))
	e.U8(formatVersion)
	e.U8(uint8(t))
	return e
}

// newDecoder reads and checks the header of a message of type t.
func newDecoder(t msgType, b []byte) (*wire.Decoder, error) {
	d := wire.NewDecoder(t.String(), b)
	var m [len(magic)]byte
	d.Fixed("magic", m[:])
	v := d.U8("version")
	got := msgType(d.U8("type"))
	if err := d.Err(); err != nil {
		return nil, err
	}
	if string(m[:]) != magic {
		return nil, fmt.Errorf("decode %s: bad magic %q, want %q", t, m[:], magic)
	}
	if v != formatVersion {
		return nil, fmt.Errorf("decode %s: unsupported version %d, want %d", t, v, formatVersion)
	}
	if !got.valid() {
		return nil, fmt.Errorf("decode %s: %s", t, got)
	}
	if got != t {
		return nil, fmt.Errorf("decode %s: the message is a %s", t, got)
	}
	return d, nil
}

// checkBytes checks that a variable-length field is present and bounded.
func checkBytes(field string, b []byte, max int) error {
	if len(b) == 0 {
		return fmt.Errorf("%s is empty", field)
	}
	if len(b) > max {
		return fmt.Errorf("%s is %d bytes, at most %d", field, len(b), max)
	}
	return nil
}

// checkChainID checks a chain id's length.
func checkChainID(id string) error {
	if id == "" {
		return errors.New("chain id is empty")
	}
	if len(id) > MaxChainIDLen {
		return fmt.Errorf("chain id is %d bytes, at most %d", len(id), MaxChainIDLen)
	}
	return nil
}

// encodeID encodes an enclave ID as a length-prefixed field.
func encodeID(id release.EnclaveID) ([]byte, error) {
	b, err := id.MarshalBinary()
	if err != nil {
		return nil, err
	}
	if len(b) > maxEnclaveIDSize {
		return nil, fmt.Errorf("enclave id is %d bytes, at most %d", len(b), maxEnclaveIDSize)
	}
	return b, nil
}

func (m Request) validate() error {
	if err := m.RequesterRole.Validate(); err != nil {
		return fmt.Errorf("requester role: %w", err)
	}
	return nil
}

// MarshalBinary encodes the request: header | role (string).
func (m Request) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encode request: %w", err)
	}
	e := newEncoder(typeRequest, 4+len(m.RequesterRole))
	e.String(string(m.RequesterRole))
	return e.Bytes(), nil
}

// UnmarshalBinary decodes an untrusted encoded request strictly.
func (m *Request) UnmarshalBinary(b []byte) error {
	d, err := newDecoder(typeRequest, b)
	if err != nil {
		return err
	}
	out := Request{RequesterRole: release.Role(d.String("requester role", maxRoleLen))}
	if err := d.Finish(); err != nil {
		return err
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode request: %w", err)
	}
	*m = out
	return nil
}

func (m Challenge) validate() error {
	if err := checkChainID(m.ChainID); err != nil {
		return err
	}
	if err := checkBytes("provider target info", m.ProviderTargetInfo, MaxTargetInfoSize); err != nil {
		return err
	}
	if err := m.ProviderRole.Validate(); err != nil {
		return fmt.Errorf("provider role: %w", err)
	}
	return nil
}

// MarshalBinary encodes the challenge: header | nonce 32 | chain id (string)
// | height u64 | expiry u64 | target info (bytes) | role (string) |
// has-id bool | [enclave id (bytes)].
func (m Challenge) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encode challenge: %w", err)
	}
	var id []byte
	if m.ProviderID != nil {
		var err error
		if id, err = encodeID(*m.ProviderID); err != nil {
			return nil, fmt.Errorf("encode challenge: provider id: %w", err)
		}
	}
	e := newEncoder(typeChallenge, NonceSize+4+len(m.ChainID)+16+4+len(m.ProviderTargetInfo)+4+len(m.ProviderRole)+1+4+len(id))
	e.Fixed(m.Nonce[:])
	e.String(m.ChainID)
	e.U64(m.Height)
	e.U64(uint64(m.Expiry))
	e.Var(m.ProviderTargetInfo)
	e.String(string(m.ProviderRole))
	e.Bool(m.ProviderID != nil)
	if m.ProviderID != nil {
		e.Var(id)
	}
	return e.Bytes(), nil
}

// UnmarshalBinary decodes an untrusted encoded challenge strictly. It does
// not verify the provider ID's signatures.
func (m *Challenge) UnmarshalBinary(b []byte) error {
	d, err := newDecoder(typeChallenge, b)
	if err != nil {
		return err
	}
	var out Challenge
	d.Fixed("nonce", out.Nonce[:])
	out.ChainID = d.String("chain id", MaxChainIDLen)
	out.Height = d.U64("height")
	out.Expiry = int64(d.U64("expiry"))
	out.ProviderTargetInfo = d.Var("provider target info", MaxTargetInfoSize)
	out.ProviderRole = release.Role(d.String("provider role", maxRoleLen))
	hasID := d.Bool("has provider id")
	var rawID []byte
	if hasID {
		rawID = d.Var("provider id", maxEnclaveIDSize)
	}
	if err := d.Finish(); err != nil {
		return err
	}
	if hasID {
		var id release.EnclaveID
		if err := id.UnmarshalBinary(rawID); err != nil {
			return fmt.Errorf("decode challenge: provider id: %w", err)
		}
		out.ProviderID = &id
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode challenge: %w", err)
	}
	*m = out
	return nil
}

func (m Answer) validate() error {
	if err := checkBytes("requester target info", m.RequesterTargetInfo, MaxTargetInfoSize); err != nil {
		return err
	}
	if len(m.OneTimeKey) != OneTimeKeySize {
		return fmt.Errorf("one-time key is %d bytes, want %d", len(m.OneTimeKey), OneTimeKeySize)
	}
	if err := checkBytes("report", m.Report, MaxReportSize); err != nil {
		return err
	}
	return nil
}

// MarshalBinary encodes the answer: header | nonce 32 | target info (bytes)
// | one-time key (bytes) | report (bytes) | enclave id (bytes).
func (m Answer) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encode answer: %w", err)
	}
	id, err := encodeID(m.RequesterID)
	if err != nil {
		return nil, fmt.Errorf("encode answer: requester id: %w", err)
	}
	e := newEncoder(typeAnswer, NonceSize+4+len(m.RequesterTargetInfo)+4+len(m.OneTimeKey)+4+len(m.Report)+4+len(id))
	e.Fixed(m.Nonce[:])
	e.Var(m.RequesterTargetInfo)
	e.Var(m.OneTimeKey)
	e.Var(m.Report)
	e.Var(id)
	return e.Bytes(), nil
}

// UnmarshalBinary decodes an untrusted encoded answer strictly. It verifies
// neither the report nor the requester ID's signatures.
func (m *Answer) UnmarshalBinary(b []byte) error {
	d, err := newDecoder(typeAnswer, b)
	if err != nil {
		return err
	}
	var out Answer
	d.Fixed("nonce", out.Nonce[:])
	out.RequesterTargetInfo = d.Var("requester target info", MaxTargetInfoSize)
	out.OneTimeKey = d.Var("one-time key", OneTimeKeySize)
	out.Report = d.Var("report", MaxReportSize)
	rawID := d.Var("requester id", maxEnclaveIDSize)
	if err := d.Finish(); err != nil {
		return err
	}
	if err := out.RequesterID.UnmarshalBinary(rawID); err != nil {
		return fmt.Errorf("decode answer: requester id: %w", err)
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	*m = out
	return nil
}

func (m Delivery) validate() error {
	if err := checkBytes("ciphertext", m.Ciphertext, MaxCiphertextSize); err != nil {
		return err
	}
	if err := checkBytes("report", m.Report, MaxReportSize); err != nil {
		return err
	}
	return nil
}

// MarshalBinary encodes the delivery: header | nonce 32 | ciphertext
// (bytes) | report (bytes).
func (m Delivery) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encode delivery: %w", err)
	}
	e := newEncoder(typeDelivery, NonceSize+4+len(m.Ciphertext)+4+len(m.Report))
	e.Fixed(m.Nonce[:])
	e.Var(m.Ciphertext)
	e.Var(m.Report)
	return e.Bytes(), nil
}

// UnmarshalBinary decodes an untrusted encoded delivery strictly. It
// verifies neither the report nor the ciphertext.
func (m *Delivery) UnmarshalBinary(b []byte) error {
	d, err := newDecoder(typeDelivery, b)
	if err != nil {
		return err
	}
	var out Delivery
	d.Fixed("nonce", out.Nonce[:])
	out.Ciphertext = d.Var("ciphertext", MaxCiphertextSize)
	out.Report = d.Var("report", MaxReportSize)
	if err := d.Finish(); err != nil {
		return err
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode delivery: %w", err)
	}
	*m = out
	return nil
}

func (m Refusal) validate() error {
	if m.Reason == "" {
		return errors.New("reason is empty")
	}
	if len(m.Reason) > MaxReasonLen {
		return fmt.Errorf("reason is %d bytes, at most %d", len(m.Reason), MaxReasonLen)
	}
	if !utf8.ValidString(m.Reason) {
		return errors.New("reason is not valid UTF-8")
	}
	for _, r := range m.Reason {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("reason contains the unprintable character %U", r)
		}
	}
	return nil
}

// MarshalBinary encodes the refusal: header | reason (string).
func (m Refusal) MarshalBinary() ([]byte, error) {
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("encode refusal: %w", err)
	}
	e := newEncoder(typeRefusal, 4+len(m.Reason))
	e.String(m.Reason)
	return e.Bytes(), nil
}

// UnmarshalBinary decodes an untrusted encoded refusal strictly: the reason
// must be printable UTF-8, so printing it cannot drive a terminal.
func (m *Refusal) UnmarshalBinary(b []byte) error {
	d, err := newDecoder(typeRefusal, b)
	if err != nil {
		return err
	}
	out := Refusal{Reason: d.String("reason", MaxReasonLen)}
	if err := d.Finish(); err != nil {
		return err
	}
	if err := out.validate(); err != nil {
		return fmt.Errorf("decode refusal: %w", err)
	}
	*m = out
	return nil
}

// RefusalFor builds a Refusal whose reason is err's text made printable
// (other characters become '?') and cut to MaxReasonLen bytes.
func RefusalFor(err error) Refusal {
	reason := "refused"
	if err != nil && err.Error() != "" {
		reason = err.Error()
	}
	out := make([]byte, 0, min(len(reason), MaxReasonLen))
	for _, r := range reason {
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		if len(out)+utf8.RuneLen(r) > MaxReasonLen {
			break
		}
		out = utf8.AppendRune(out, r)
	}
	return Refusal{Reason: string(out)}
}
