// Package buildinfo holds values stamped into binaries at link time with
// -ldflags "-X github.com/teeup/teeup/internal/buildinfo.Version=...".
// They are build-time constants: nothing assigns them at run time.
package buildinfo

// Version is the teeup release version of this binary.
var Version = "0.1.0-dev"

// Schema is the newest ledger schema version this binary migrates to; empty
// means the newest one in the migration registry. Release builds may pin an
// older schema so that two versions of the node differ in what they migrate.
var Schema = ""
