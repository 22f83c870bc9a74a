// Package distribute is teeup's ledger distribution: an untrusted host
// process that follows a node's finalized blocks and publishes them, still
// encrypted and signed, exactly as the node serves them, to a directory or
// an S3 bucket, keeping a state file with the next height to publish.
//
// The state file is crash-safe and the procedure never skips a block and
// never uploads one twice:
//
//   - block N is stored in the destination (an atomic write) before the state
//     file is atomically rewritten to say N+1, so the state file is never
//     ahead of the destination and at most one block behind it;
//   - before storing block N the distributor reads the destination: if it
//     already holds block N (a crash between the two writes) and the bytes are
//     the source's, the block is not uploaded again, only the state advances;
//     if the bytes differ the distributor refuses to go on (ErrBlockMismatch);
//   - at start, Reconcile repairs a state file that lags the destination in
//     the same way, and reports (but never fills out of order) blocks the
//     destination holds beyond a gap.
//
// The flag-day procedure snapshots this state file together with the ledger
// database.
//
// A state file and destination must have a single distributor writing them.
package distribute
