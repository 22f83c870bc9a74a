package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/teeup/teeup/tee"
)

// Limits of the canonical encodings. Decoders refuse anything larger.
const (
	// MaxChainIDLen is the longest chain id, in bytes.
	MaxChainIDLen = 64
	// MaxPayloadSize is the largest payload of a payment (and of a
	// transaction of unknown kind).
	MaxPayloadSize = 4 << 10
	// MaxGovernancePayloadSize is the largest payload of a governance
	// transaction: a proposal carries a whole signed release. It is chosen
	// so that the largest governance transaction, hex-encoded in a submit
	// request, fits in the node API's 64 KiB request limit.
	MaxGovernancePayloadSize = 30 << 10
	// MaxBodySize is the largest encrypted block body.
	MaxBodySize = 8 << 20
	// MaxReasonLen is the longest rejection reason kept in a status.
	MaxReasonLen = 1 << 10
)

// ErrNotFound is wrapped by the errors of reads of absent blocks.
var ErrNotFound = errors.New("not found")

// Address identifies an account: an ed25519 public key.
type Address [32]byte

// String returns the address as lower-case hex.
func (a Address) String() string { return hex.EncodeToString(a[:]) }

// IsZero reports whether the address is all zeros.
func (a Address) IsZero() bool { return a == Address{} }

// PublicKey returns the address as an ed25519 public key.
func (a Address) PublicKey() ed25519.PublicKey { return ed25519.PublicKey(a[:]) }

// MarshalText encodes the address as hex (for JSON).
func (a Address) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText decodes a hex address (for JSON).
func (a *Address) UnmarshalText(text []byte) error {
	v, err := ParseAddress(string(text))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// ParseAddress parses a 64-digit hex address.
func ParseAddress(s string) (Address, error) {
	var a Address
	if err := parseHex32(s, a[:]); err != nil {
		return Address{}, fmt.Errorf("parse address: %w", err)
	}
	return a, nil
}

// AddressOf returns the address of an ed25519 public key.
func AddressOf(pub ed25519.PublicKey) (Address, error) {
	var a Address
	if len(pub) != ed25519.PublicKeySize {
		return a, fmt.Errorf("address of public key: %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	copy(a[:], pub)
	return a, nil
}

// Hash is a SHA-256 digest: a transaction id or a block hash.
type Hash [32]byte

// String returns the hash as lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether the hash is all zeros.
func (h Hash) IsZero() bool { return h == Hash{} }

// MarshalText encodes the hash as hex (for JSON).
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a hex hash (for JSON).
func (h *Hash) UnmarshalText(text []byte) error {
	v, err := ParseHash(string(text))
	if err != nil {
		return err
	}
	*h = v
	return nil
}

// ParseHash parses a 64-digit hex hash.
func ParseHash(s string) (Hash, error) {
	var h Hash
	if err := parseHex32(s, h[:]); err != nil {
		return Hash{}, fmt.Errorf("parse hash: %w", err)
	}
	return h, nil
}

func parseHex32(s string, dst []byte) error {
	if len(s) != 2*len(dst) {
		return fmt.Errorf("%q has %d hex digits, want %d", s, len(s), 2*len(dst))
	}
	if _, err := hex.Decode(dst, []byte(s)); err != nil {
		return fmt.Errorf("%q is not hex: %w", s, err)
	}
	return nil
}

// TxKind says what a transaction does and how its payload is encoded.
type TxKind uint8

// Transaction kinds. Store.Apply rejects kinds it does not know. The
// governance kinds (see governance.go) are sent by members of the genesis
// Node Operators Group.
const (
	// TxPayment moves an amount from the sender to a recipient; its payload
	// is an encoded Payment.
	TxPayment TxKind = 1
	// TxProposeRelease proposes a release signed by the Key Management
	// Group; its payload is the signed release's JSON.
	TxProposeRelease TxKind = 2
	// TxApproveRelease approves a proposed release; its payload is an
	// encoded ReleaseApproval.
	TxApproveRelease TxKind = 3
	// TxScheduleUpgrade votes for an upgrade schedule; its payload is an
	// encoded UpgradeSchedule.
	TxScheduleUpgrade TxKind = 4
	// TxAbortUpgrade votes to abort the scheduled upgrade; its payload is
	// an encoded UpgradeAbort.
	TxAbortUpgrade TxKind = 5
	// TxApproveRollback votes for a rollback to an older release; its
	// payload is an encoded RollbackApproval.
	TxApproveRollback TxKind = 6
	// TxAddNode votes to add a member; its payload is an encoded
	// MemberSpec (see membership.go).
	TxAddNode TxKind = 7
	// TxRemoveNode votes to remove a member; payload: NodeRemoval.
	TxRemoveNode TxKind = 8
	// TxRekeyNode replaces a member's node identity key, by its operator or
	// by NOG vote; payload: NodeRekey.
	TxRekeyNode TxKind = 9
	// TxChangeGroup votes to replace the NOG or the KMG; payload:
	// GroupChange.
	TxChangeGroup TxKind = 10
)

// Known reports whether this binary knows the kind.
func (k TxKind) Known() bool {
	return k == TxPayment || k.IsGovernance()
}

// IsGovernance reports whether the kind is a governance transaction.
func (k TxKind) IsGovernance() bool {
	switch k {
	case TxProposeRelease, TxApproveRelease, TxScheduleUpgrade, TxAbortUpgrade, TxApproveRollback,
		TxAddNode, TxRemoveNode, TxRekeyNode, TxChangeGroup, TxReadiness, TxUpgradeFailure:
		return true
	default:
		return false
	}
}

// IsMembership reports whether the kind changes membership or a group.
func (k TxKind) IsMembership() bool {
	switch k {
	case TxAddNode, TxRemoveNode, TxRekeyNode, TxChangeGroup:
		return true
	default:
		return false
	}
}

// MaxPayload returns the largest payload a transaction of the kind may
// carry: MaxGovernancePayloadSize for governance kinds, MaxPayloadSize
// otherwise.
func (k TxKind) MaxPayload() int {
	if k.IsGovernance() {
		return MaxGovernancePayloadSize
	}
	return MaxPayloadSize
}

// String names the kind.
func (k TxKind) String() string {
	switch k {
	case TxPayment:
		return "payment"
	case TxProposeRelease:
		return "propose-release"
	case TxApproveRelease:
		return "approve-release"
	case TxScheduleUpgrade:
		return "schedule-upgrade"
	case TxAbortUpgrade:
		return "abort-upgrade"
	case TxApproveRollback:
		return "approve-rollback"
	case TxAddNode:
		return "add-node"
	case TxRemoveNode:
		return "remove-node"
	case TxRekeyNode:
		return "rekey-node"
	case TxChangeGroup:
		return "change-group"
	case TxReadiness:
		return "readiness"
	case TxUpgradeFailure:
		return "upgrade-failure"
	default:
		return fmt.Sprintf("tx kind %d", uint8(k))
	}
}

// Tx is a signed transaction. From is both the sender's account and the key
// that signs; Nonce is the sender's transaction sequence number, starting at
// 1, which makes every transaction unique and prevents replays.
type Tx struct {
	ChainID string
	Kind    TxKind
	From    Address
	Nonce   uint64
	Payload []byte
	Sig     [ed25519.SignatureSize]byte
}

// txSigningDomain separates transaction signatures from every other
// signature made with an account key.
const txSigningDomain = "teeup tx v1"

// NewPayment returns a payment of amount from the key's account to to,
// signed. from must be a 64-byte ed25519 private key: like ed25519.Sign,
// NewPayment panics on a key of another length (a programming error). Use
// Tx.Sign to get an error instead.
func NewPayment(chainID string, from ed25519.PrivateKey, to Address, amount, nonce uint64) *Tx {
	t := &Tx{
		ChainID: chainID,
		Kind:    TxPayment,
		Nonce:   nonce,
		Payload: EncodePayment(Payment{To: to, Amount: amount}),
	}
	copy(t.From[:], from.Public().(ed25519.PublicKey))
	copy(t.Sig[:], ed25519.Sign(from, t.SigningBytes()))
	return t
}

// Sign sets From to the key's address and Sig to the key's signature.
func (t *Tx) Sign(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign tx: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	copy(t.From[:], key.Public().(ed25519.PublicKey))
	copy(t.Sig[:], ed25519.Sign(key, t.SigningBytes()))
	return nil
}

// VerifySignature checks Sig against From over SigningBytes.
func (t *Tx) VerifySignature() error {
	if !ed25519.Verify(t.From.PublicKey(), t.SigningBytes(), t.Sig[:]) {
		return fmt.Errorf("verify tx from %s nonce %d: bad signature", t.From, t.Nonce)
	}
	return nil
}

// ID returns the transaction id: SHA-256 of its encoding.
func (t *Tx) ID() Hash { return sha256.Sum256(t.Encode()) }

// Payment is the payload of a TxPayment transaction.
type Payment struct {
	To     Address
	Amount uint64
}

// ErrZeroAmount is wrapped by DecodePayment's error for a zero amount.
var ErrZeroAmount = errors.New("amount is zero")

// BlockHeader is the public, signed part of a block. Its encoding is what
// the block hash and the proposer's signature cover.
type BlockHeader struct {
	ChainID  string
	Height   uint64
	PrevHash Hash
	// Time is the proposer's clock in Unix nanoseconds; it never decreases
	// from one block to the next.
	Time int64
	// BodyHash is SHA-256 of the encrypted body (for block 0: the genesis
	// hash).
	BodyHash Hash
	TxCount  uint32
	// Proposer is the raft node id of the leader that built the block.
	Proposer uint64
	// ProposerKey is that node's registered ed25519 public key.
	ProposerKey Address
}

// blockSigningDomain separates block signatures from every other signature
// made with a node key.
const blockSigningDomain = "teeup block v1"

// SigningBytes returns what the proposer signs: a domain and the encoded
// header.
func (h *BlockHeader) SigningBytes() []byte {
	enc := h.Encode()
	b := make([]byte, 0, len(blockSigningDomain)+len(enc))
	b = append(b, blockSigningDomain...)
	return append(b, enc...)
}

// Block is a header, its proposer's signature and the encrypted body.
type Block struct {
	Header BlockHeader
	// Sig is the proposer's ed25519 signature over Header.SigningBytes();
	// zero for block 0.
	Sig [ed25519.SignatureSize]byte
	// Body is the sealed list of transactions (see SealBody); empty for
	// block 0.
	Body []byte
}

// Hash returns the block hash: SHA-256 of the encoded header.
func (b *Block) Hash() Hash { return sha256.Sum256(b.Header.Encode()) }

// VerifySignature checks Sig against the header's ProposerKey.
func (b *Block) VerifySignature() error {
	if !ed25519.Verify(b.Header.ProposerKey.PublicKey(), b.Header.SigningBytes(), b.Sig[:]) {
		return fmt.Errorf("verify block %d: bad proposer signature", b.Header.Height)
	}
	return nil
}

// CmdKind says what a raft command does.
type CmdKind uint8

// Command kinds.
const (
	// CmdSubmitTx admits a transaction to the pool.
	CmdSubmitTx CmdKind = 1
	// CmdBlock appends a block built by the leader.
	CmdBlock CmdKind = 2
	// CmdRegisterNode records a node's key and enclave measurement.
	CmdRegisterNode CmdKind = 3
	// CmdHalt sets the halt height (0 clears it).
	CmdHalt CmdKind = 4
	// CmdCompact tells every node that all nodes have stored the raft log
	// up to CompactIndex, so each may discard its log before that index.
	// It changes no ledger state.
	CmdCompact CmdKind = 5
)

// String names the kind.
func (k CmdKind) String() string {
	switch k {
	case CmdSubmitTx:
		return "submit-tx"
	case CmdBlock:
		return "block"
	case CmdRegisterNode:
		return "register-node"
	case CmdHalt:
		return "halt"
	case CmdCompact:
		return "compact"
	default:
		return fmt.Sprintf("command kind %d", uint8(k))
	}
}

// Command is the payload of a raft entry. Exactly the field of its Kind is
// set: Tx for CmdSubmitTx, Block for CmdBlock, Node for CmdRegisterNode,
// HaltHeight for CmdHalt, CompactIndex for CmdCompact.
type Command struct {
	Kind         CmdKind
	Tx           *Tx
	Block        *Block
	Node         *NodeRecord
	HaltHeight   uint64
	CompactIndex uint64
}

// NodeRecord is a consensus node's registration: its raft id, its ed25519
// key (which signs its blocks) and its enclave measurement.
type NodeRecord struct {
	ID          uint64
	Key         Address
	Measurement tee.Measurement
}

// Account is an account's state. Pending and PendingDebit count the
// sender's admitted transactions that wait in the pool: the next nonce the
// account may use is Nonce + Pending + 1, and it may spend at most
// Balance - PendingDebit.
type Account struct {
	Balance      uint64
	Nonce        uint64
	Pending      uint64
	PendingDebit uint64
}

// Transaction states reported by TxStatus.State.
const (
	StatePending   = "pending"
	StateCommitted = "committed"
	StateRejected  = "rejected"
)

// TxStatus is what the ledger knows of a transaction id.
type TxStatus struct {
	// State is StatePending, StateCommitted or StateRejected.
	State string
	// Height is the block that committed the transaction (committed only).
	Height uint64
	// Code is the typed outcome: CodeOK for a pending transaction or one
	// committed with its effect, CodeNoEffect for a governance transaction
	// committed without effect, else the rejection's code.
	Code Code
	// Reason says why the transaction was rejected (rejected), or why a
	// committed governance transaction had no effect (see
	// Store.Governance). It is for people: act on Code.
	Reason string
}

// Result is the outcome of applying one command. Deterministic rejections
// are results (Accepted false, Code and Reason set), not errors.
type Result struct {
	Kind CmdKind
	// Accepted reports whether the command changed the state as asked.
	Accepted bool
	// Duplicate marks an index at or below the applied index: nothing was
	// done, and only Kind, TxID and Height (taken from the command) are set.
	Duplicate bool
	// Code is CodeOK for an accepted command, else the rejection's code
	// (empty for a Duplicate result).
	Code Code
	// Reason explains a rejection, for people: act on Code.
	Reason string
	// TxID is the submitted transaction's id (CmdSubmitTx).
	TxID Hash
	// Height is the block height (CmdBlock), the halt height (CmdHalt), or
	// the height that committed an already committed transaction
	// (CmdSubmitTx).
	Height uint64
	// TxIDs are the transactions an accepted block committed, in order.
	TxIDs []Hash
}

// HistoryEntry is one committed payment touching an account (sender or
// recipient), from the schema-2 account history index.
type HistoryEntry struct {
	Height uint64
	// Index is the transaction's position in its block.
	Index  uint32
	TxID   Hash
	From   Address
	To     Address
	Amount uint64
}
