//go:build faults

package node

import (
	"io"

	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/ledger"
)

// faultsFromEnv returns the failure-injection points TEEUP_FAULTS enables
// (a test build: the "faults" tag).
func faultsFromEnv(io.Writer) (Faults, error) {
	return fault.FromEnv()
}

// withInjectedPayment applies InjectBadSignature to the leader's block
// candidates, returning them and the corrupted payment (nil when the point
// did not fire). The mempool's slice and payments are not modified.
func withInjectedPayment(f Faults, payments []*ledger.Tx) ([]*ledger.Tx, *ledger.Tx) {
	if len(payments) == 0 || f.Error(InjectBadSignature) == nil {
		return payments, nil
	}
	bad := *payments[0]
	bad.Sig[0] ^= 1
	out := append([]*ledger.Tx{&bad}, payments[1:]...)
	return out, &bad
}
