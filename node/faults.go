package node

// Faults are the node's failure-injection points, for crash and failure
// tests. A default build has none: its hooks do nothing and TEEUP_FAULTS
// is ignored (faults_off.go). A build with the "faults" tag reads them
// from TEEUP_FAULTS through internal/fault (faults_on.go), whose Set
// implements this interface.
type Faults interface {
	// CrashPoint ends the process as kill -9 would when "crash:<name>" is
	// enabled.
	CrashPoint(name string)
	// Error returns an error when "fail:<name>" is enabled.
	Error(name string) error
	// Has reports whether a point is enabled.
	Has(name string) bool
	// Value returns the value given to a point.
	Value(name string) string
}

// InjectBadSignature is the failure point that makes a leader propose a
// block carrying a payment whose signature does not verify ("fail:" +
// this; one-shot with TEEUP_FAULTS_ONCE_DIR): its first candidate payment
// is replaced by a copy with one signature bit flipped. A faulty or
// malicious leader could do the same; every node's apply must refuse the
// block as a whole.
const InjectBadSignature = "node.propose-bad-signature"

// noFaults is the node without failure injection.
type noFaults struct{}

func (noFaults) CrashPoint(string)   {}
func (noFaults) Error(string) error  { return nil }
func (noFaults) Has(string) bool     { return false }
func (noFaults) Value(string) string { return "" }
