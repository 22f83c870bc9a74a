//go:build !faults

package node

import (
	"io"

	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/ledger"
)

// faultsFromEnv returns no failure injection: this build has none. A
// TEEUP_FAULTS setting is reported and ignored.
func faultsFromEnv(stderr io.Writer) (Faults, error) {
	buildinfo.WarnFaultsIgnored(stderr, "teeup-node")
	return noFaults{}, nil
}

// withInjectedPayment returns the leader's block candidates unchanged: this
// build injects nothing.
func withInjectedPayment(_ Faults, payments []*ledger.Tx) ([]*ledger.Tx, *ledger.Tx) {
	return payments, nil
}
