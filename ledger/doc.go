// Package ledger is teeup's replicated ledger: the chain types
// (transactions, blocks, raft commands) with their canonical binary
// encodings, the genesis file, a deterministic state machine applying
// committed raft commands, and its Pebble storage with schema migrations and
// cheap checkpoints.
//
// # Encodings
//
// Every binary structure is written with internal/wire: fixed-width
// big-endian integers and length-prefixed byte strings. Decoders accept
// exactly the bytes the encoders produce (no trailing bytes, bounded
// lengths), so for every structure decode(encode(x)) == x and
// encode(decode(b)) == b. Hashes and signatures are therefore over canonical
// bytes.
//
// # Confidentiality
//
// Block bodies and raft entries are encrypted with AES-256-GCM under keys
// derived with HKDF-SHA256 from the network's 32-byte ledger key (see
// LedgerKey). Block headers are public and signed by their proposer. From
// schema 3 the records that reveal users or amounts (accounts, pool,
// transaction statuses, account history) are sealed at rest with a
// deterministic SIV AEAD bound to their storage key, and the keys that
// would name an address or a transaction id carry a keyed hash of it (see
// atrest.go).
//
// # State machine
//
// Store.Apply executes one committed raft entry. It is deterministic: every
// node applying the same commands in the same order ends with identical
// bytes, hence identical block hashes and balances. A transaction is
// admitted to a replicated pool when its submit command is applied
// (signature, chain id, nonce sequence, balance minus pending debits); the
// leader cuts blocks from the head of the pool (Store.BuildBlock), and the
// payments take effect when the block command is applied.
//
// # Storage layout
//
// One Pebble database per node holds everything, so a checkpoint captures a
// consistent state. The ledger owns these key prefixes:
//
//	m/<name>                       meta: schema, chain id, genesis hash, head, applied index, halt, pool
//	b/<height:8>                   encoded block
//	a/<address:32>                 account record
//	t/<txid:32>                    transaction status
//	p/<seq:8>                      pool entry (encoded transaction), in admission order
//	n/<id:8>                       registered node
//	x/<address:32><height:8><i:4>  account history (schema ≥ 2)
//	g/                             release governance (see governance.go)
//
// The prefix r/ belongs to the consensus package (raft's durable log); the
// ledger never reads or writes it.
//
// From schema 3, <address> and <txid> in a/, t/ and x/ keys are keyed
// hashes, and the values of a/, t/, p/ and x/ are sealed.
package ledger
