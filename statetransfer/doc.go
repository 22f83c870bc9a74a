// Package statetransfer moves a node's whole ledger state to a peer that
// cannot be served from the raft log (wiped, restored from an older copy,
// down through compactions), and installs it atomically.
//
// The sender streams a consistent Pebble checkpoint of its ledger (the
// files of the checkpoint directory) after a raft MsgSnap whose metadata
// names the checkpoint's applied index, term and membership. The stream
// runs inside the mutual attested TLS connection of the peer transport, so
// only a peer with an identical MRENCLAVE can send or receive one. The
// receiver writes the files into a staging directory, syncs them, lets the
// caller verify the staged ledger (chain id, block hash chain, proposer
// signatures, applied index and membership against the raft metadata),
// and only then renames it into place as a complete staged snapshot and
// hands the MsgSnap to raft.
//
// Installation happens when raft restores the snapshot: the raft loop
// records an install marker and the node restarts its components; before
// the ledger is opened, Recover completes the install from the marker. The
// decision of what to do after a crash is the pure function Plan, over what
// is on disk; the single commit point is the rename of the live ledger to
// its ".old" name, so a kill -9 at any moment leaves either the old state
// or the new one, never a mix.
package statetransfer
