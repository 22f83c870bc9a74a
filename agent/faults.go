package agent

// Faults are the agent's failure-injection points, for crash tests. A
// default build has none: its hook does nothing and TEEUP_FAULTS is
// ignored (faults_off.go). A build with the "faults" tag reads them from
// TEEUP_FAULTS through internal/fault (faults_on.go), whose Set implements
// this interface.
type Faults interface {
	// CrashPoint ends the process as kill -9 would when "crash:<name>" is
	// enabled.
	CrashPoint(name string)
}

// noFaults is the agent without failure injection.
type noFaults struct{}

func (noFaults) CrashPoint(string) {}
