// Package snapshot makes named, verifiable snapshots of a node's local
// state — the Pebble ledger database and the ledger-distribution state file —
// and restores them. It implements the flag-day step "snapshot all nodes'
// local databases" and the rollback that undoes an upgrade.
//
// # Layout
//
// A snapshot is a directory Root/Name holding
//
//	ledger/            a Pebble checkpoint of the ledger database
//	distribute.state   a copy of the distribution state file (optional)
//	manifest.json      name, creation time, caller labels, and the size
//	                   and SHA-256 of every other file
//
// Sstables are immutable in Pebble, so a checkpoint hard-links them instead
// of copying: taking a snapshot costs O(files) in writes. Hashing the files
// for the manifest still reads every byte once.
//
// # Crash safety
//
// Create builds the snapshot in a hidden directory Root/.Name.partial-RANDOM,
// syncs every file and directory, and only then renames it to Root/Name, so
// Root/Name is either absent or complete. Create is idempotent: called again
// for a name that exists and verifies, it returns the existing manifest.
// Restore builds the new ledger directory beside the current one, moves the
// current one aside (it is kept unless asked otherwise) and renames the new
// one into place; the state file is replaced with a rename. Restore links
// only the sstables into the restored database and copies the MANIFEST, WAL
// and OPTIONS files, which Pebble appends to, so the snapshot stays intact
// and re-verifiable after the restored database is written to.
//
// The functions are safe to call concurrently for different names and
// directories; two concurrent Create calls for the same name, or two
// concurrent Restore calls into the same ledger directory, are not
// supported. Restore must not run while a process has the ledger open.
package snapshot
