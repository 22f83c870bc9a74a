package ledger

import "fmt"

// Code is the typed outcome of a command or a transaction: what callers
// act on. Reason, beside it, is the human explanation and may change
// wording at any time; Code values never change meaning. Codes are short
// snake_case strings, stored in transaction statuses and carried by the
// node API as they are.
type Code string

// Outcome codes. CodeOK is the code of an accepted command, a pending
// transaction and a committed transaction that took effect.
const (
	// CodeOK: accepted, pending, or committed with its effect.
	CodeOK Code = "ok"
	// CodeNoEffect: a governance transaction was committed (its nonce is
	// consumed) but the state changed since its admission so that it had
	// no effect (it lost a race, e.g. a second vote after the quorum).
	// Reason says why. It is committed, not rejected.
	CodeNoEffect Code = "no_effect"

	// CodeMalformed: the command or the transaction's payload does not
	// decode, is oversize, of an unknown kind, or a payment of zero.
	CodeMalformed Code = "malformed"
	// CodeWrongChain: the transaction or block is for another chain id
	// (or a release for another network).
	CodeWrongChain Code = "wrong_chain"
	// CodeBadSignature: the transaction's signature, or one it must carry
	// (the KMG threshold's on a KMG change), does not verify.
	CodeBadSignature Code = "bad_signature"
	// CodeBadNonce: the nonce is not the sender's next one.
	CodeBadNonce Code = "bad_nonce"
	// CodeInsufficientFunds: the amount exceeds the balance less the
	// pending debits.
	CodeInsufficientFunds Code = "insufficient_funds"
	// CodePoolFull: the pool holds max_pool transactions; retry later.
	CodePoolFull Code = "pool_full"
	// CodeAlreadyPending: the same transaction (same id) is already
	// admitted and waits in the pool; its block will commit it.
	CodeAlreadyPending Code = "already_pending"
	// CodeAlreadyCommitted: the same transaction was already committed
	// (Result.Height and TxStatus.Height say where).
	CodeAlreadyCommitted Code = "already_committed"

	// CodeNotMember: the sender is not a member of the node operators
	// group in force (or may not act on that node), or a node that
	// registers is not a member.
	CodeNotMember Code = "not_member"
	// CodeDuplicate: the same proposal, approval or vote was already made
	// or recorded.
	CodeDuplicate Code = "duplicate"
	// CodeDowngrade: the release is not newer than the running release or
	// an approved one (or migrates the schema back), and no approved
	// rollback allows it.
	CodeDowngrade Code = "downgrade"
	// CodeBadRelease: the release does not verify against the key
	// management group, or its manifest does not fit this chain.
	CodeBadRelease Code = "bad_release"
	// CodeUnknownRelease: the named release was never proposed.
	CodeUnknownRelease Code = "unknown_release"
	// CodeNotApproved: the named release is not approved yet.
	CodeNotApproved Code = "not_approved"
	// CodeTooSoon: the activation height is too close to the head.
	CodeTooSoon Code = "too_soon"
	// CodeConflict: the governance or membership state does not allow the
	// transaction now (another upgrade is scheduled, nothing is scheduled,
	// the node is already a member, the last member, …).
	CodeConflict Code = "conflict"
	// CodeKeyConflict: a node key or address is already used by another
	// node, or differs from the one on record.
	CodeKeyConflict Code = "key_conflict"

	// CodeBadBlock: the block does not extend the head validly (height,
	// previous hash, time, proposer, signature, body).
	CodeBadBlock Code = "bad_block"
	// CodeHalted: the block is past the halt height or the activation
	// height of an upgrade this node does not run.
	CodeHalted Code = "halted"

	// CodeRejected is the code of a rejection stored before codes existed
	// (its Reason is all that is known).
	CodeRejected Code = "rejected"
)

// Committed reports whether the code is one of a committed transaction's
// (CodeOK or CodeNoEffect) — meaningful with TxStatus.State committed.
func (c Code) Committed() bool { return c == CodeOK || c == CodeNoEffect }

// String returns the code as it is stored and sent.
func (c Code) String() string { return string(c) }

// maxCodeLen bounds a stored code, in bytes.
const maxCodeLen = 64

// verdict is the outcome of a check: the zero verdict passes; a rejection
// has a code and a reason.
type verdict struct {
	code   Code
	reason string
}

// reject returns a rejection with code c and a formatted reason.
func reject(c Code, format string, args ...any) verdict {
	return verdict{code: c, reason: fmt.Sprintf(format, args...)}
}

// failed reports whether the verdict is a rejection.
func (v verdict) failed() bool { return v.code != "" }
