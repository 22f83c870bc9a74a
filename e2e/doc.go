// Package e2e holds teeup's multi-process network tests. They build the
// binaries once (TestMain), start local networks of separate teeup-node and
// teeup-distribute processes with package devnet, on loopback only, and
// check the system's invariants from the outside: identical blocks on every
// node, refusal of a peer running a different enclave, no acknowledged
// payment lost across kill -9 and full restarts, closed ingress, rejection
// of bad transactions, halting at a height, and crash-safe distribution.
//
// The package has no code besides its tests. Run it with
//
//	go test -race ./e2e/
//
// (-short skips the slowest tests).
package e2e
