package selfupgrade

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/tee"
)

var (
	mA = tee.Measurement{0xa}
	mB = tee.Measurement{0xb}
	mC = tee.Measurement{0xc}
	tA = Target{Version: "1.0.0", ReleaseFile: "/r/1.0.0/release.json", MREnclave: mA, Binary: "/bin/teeup-agent"}
	tB = Target{Version: "2.0.0", ReleaseFile: "/r/2.0.0/release.json", MREnclave: mB, Binary: "/r/2.0.0/teeup-agent"}
	t0 = time.Date(2026, 12, 3, 6, 0, 0, 0, time.UTC)
)

func rec(p Phase) *Record {
	return &Record{ID: "x", From: tA, To: tB, Phase: p, StartedAt: t0, UpdatedAt: t0}
}

// TestDecide covers every decision.
func TestDecide(t *testing.T) {
	obs := func(self tee.Measurement, wanted Target) Observation {
		return Observation{Self: self, Wanted: wanted, Now: t0}
	}
	failed := rec(PhaseFailed)
	failed.Attempts, failed.RetryAt, failed.Error = 1, t0.Add(time.Minute), "boom"
	failedDue := *failed
	failedDue.RetryAt = t0.Add(-time.Second)
	completedB := rec(PhaseCompleted)
	older := Target{Version: "1.5.0", MREnclave: mC, Binary: "/r/1.5.0/teeup-agent"}
	newerC := Target{Version: "3.0.0", MREnclave: mC, Binary: "/r/3.0.0/teeup-agent"}
	busy := obs(mA, tB)
	busy.NodeUpgradeActive = true
	tests := []struct {
		name   string
		rec    *Record
		obs    Observation
		want   Kind
		then   Phase
		target tee.Measurement
		reason string
	}{
		{"nothing journalled, installed release has this agent", nil, obs(mA, tA), None, "", tee.Measurement{}, ""},
		{"nothing journalled, installed release's agent unknown", nil, obs(mA, Target{}), None, "", tee.Measurement{}, ""},
		{"installed release ships another agent", nil, obs(mA, tB), Begin, PhaseStarted, mB, ""},
		{"but a node upgrade is in progress", nil, busy, None, "", tee.Measurement{}, "node upgrade"},
		{"started: stage", rec(PhaseStarted), obs(mA, tB), Stage, PhaseStaged, mB, ""},
		{"staged: hand over", rec(PhaseStaged), obs(mA, tB), Handover, PhaseHandedOver, mB, ""},
		{"started but the target runs already (by hand)", rec(PhaseStarted), obs(mB, tB), Fail, PhaseFailed, mB, "still sealed"},
		{"staged but a third agent runs", rec(PhaseStaged), obs(mC, tB), Fail, PhaseFailed, mB, "another agent"},
		{"handed over, old agent: exec the new one (fails if it does not verify)", rec(PhaseHandedOver), obs(mA, tB), Exec, PhaseFailed, mB, ""},
		{"handed over, a third agent: exec the new one", rec(PhaseHandedOver), obs(mC, tB), Exec, PhaseFailed, mB, ""},
		{"handed over, new agent: install", rec(PhaseHandedOver), obs(mB, tB), Install, PhaseCompleted, mB, ""},
		{"installing, new agent: install again", rec(PhaseInstalling), obs(mB, tB), Install, PhaseCompleted, mB, ""},
		{"installing, old agent: only exec, no way back", rec(PhaseInstalling), obs(mA, tB), Exec, "", mB, ""},
		{"completed, old binary restarted: exec the new one", completedB, obs(mA, tB), Exec, "", mB, ""},
		{"completed, new agent: nothing", completedB, obs(mB, tB), None, "", tee.Measurement{}, ""},
		{"completed, rollback to an older release's agent: stay", completedB, obs(mB, older), None, "", tee.Measurement{}, "older"},
		{"completed, a newer release's agent: begin", completedB, obs(mB, newerC), Begin, PhaseStarted, mC, ""},
		{"failed, before the retry time", failed, obs(mA, tB), None, "", tee.Measurement{}, "retry at"},
		{"failed, retry time passed: begin again", &failedDue, obs(mA, tB), Begin, PhaseStarted, mB, ""},
		{"failed, but another release is installed now: begin", failed, obs(mA, newerC), Begin, PhaseStarted, mC, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := Decide(tt.rec, tt.obs)
			if a.Kind != tt.want || a.Then != tt.then || a.Target.MREnclave != tt.target {
				t.Fatalf("Decide = %s (then %q, target %s), want %s (then %q, target %s)", a.Kind, a.Then, a.Target.MREnclave.Short(), tt.want, tt.then, tt.target.Short())
			}
			if !strings.Contains(a.Reason, tt.reason) {
				t.Fatalf("reason %q does not say %q", a.Reason, tt.reason)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	if Backoff(1) != 10*time.Second || Backoff(2) != 20*time.Second || Backoff(100) != 10*time.Minute {
		t.Fatalf("backoff %v %v %v", Backoff(1), Backoff(2), Backoff(100))
	}
}

// world models one host through a self-upgrade: which agent runs, what is
// staged, and to whom each held file and the bundle are sealed.
type world struct {
	running  tee.Measurement
	staged   bool
	verifies bool // the staged binary still verifies
	bundle   bool
	files    map[string]tee.Measurement
	journal  *Record
	refused  bool // an agent refused to run
	crash    string
}

var errCrash = errors.New("crash")

// step runs one decision as the driver does; crashAt names where to crash
// ("effect:<kind>": after the effect, before the journal write;
// "mid-install": after half the files).
func (w *world) step(t *testing.T, crashAt string) (Kind, error) {
	a := Decide(w.journal, Observation{Self: w.running, Wanted: tB, Now: t0})
	journal := func(p Phase) {
		if w.journal == nil {
			w.journal = &Record{ID: "x", From: Target{MREnclave: w.running, Binary: tA.Binary, Version: tA.Version}, To: a.Target}
		}
		w.journal.Phase = p
	}
	switch a.Kind {
	case None:
		return None, nil
	case Begin, Fail:
	case Stage:
		w.staged, w.verifies = true, true
	case Handover:
		for n, m := range w.files {
			if m != w.running {
				t.Fatalf("agent %s hands over %s, sealed to %s: it cannot unseal it", w.running.Short(), n, m.Short())
			}
		}
		w.bundle = true
	case Exec:
		if !w.staged || !w.verifies {
			if a.Then == "" {
				w.refused = true
				return Exec, nil
			}
			journal(a.Then)
			return Exec, nil
		}
		w.running = a.Target.MREnclave
		return Exec, nil // the journal is not written: the new image decides
	case Install:
		if !w.bundle {
			t.Fatal("install without a bundle")
		}
		journal(PhaseInstalling)
		i := 0
		for n := range w.files {
			if crashAt == "mid-install" && i == 1 {
				return Install, errCrash
			}
			w.files[n] = w.running
			i++
		}
	}
	if crashAt == "effect:"+a.Kind.String() {
		return a.Kind, errCrash
	}
	journal(a.Then)
	if a.Kind == Install {
		w.bundle = false
	}
	return a.Kind, nil
}

// TestCrashPoints runs a self-upgrade with a crash after each effect,
// before its journal write (and in the middle of the install), the
// process then restarted by an init system that runs the old binary. Each
// run must end with the new agent running, every held file sealed to it,
// and no agent ever acting on state it cannot unseal.
func TestCrashPoints(t *testing.T) {
	points := []string{"", "effect:begin", "effect:stage", "effect:handover", "effect:install", "mid-install"}
	for _, p := range points {
		t.Run("crash at "+p, func(t *testing.T) {
			w := &world{running: mA, files: map[string]tee.Measurement{"u1.sealed": mA, "u2.sealed": mA, "u3.sealed": mA}}
			crashed := false
			for i := 0; i < 50; i++ {
				at := ""
				if !crashed {
					at = p
				}
				kind, err := w.step(t, at)
				if errors.Is(err, errCrash) {
					crashed = true
					w.running = mA // restarted from the old binary
					continue
				}
				if w.refused {
					t.Fatal("an agent refused to run")
				}
				if kind == None {
					break
				}
			}
			if p != "" && !crashed {
				t.Fatalf("the crash point %s was never reached", p)
			}
			if w.running != mB || w.journal.Phase != PhaseCompleted {
				t.Fatalf("end: running %s, phase %s; want the new agent, completed", w.running.Short(), w.journal.Phase)
			}
			for n, m := range w.files {
				if m != mB {
					t.Fatalf("%s sealed to %s after the upgrade", n, m.Short())
				}
			}
		})
	}
}

// TestExecRefusedBinary: a new binary that stops verifying after the
// handover fails the attempt while the old state is intact; once the new
// agent began installing, the old agent refuses to run instead.
func TestExecRefusedBinary(t *testing.T) {
	for _, tt := range []struct {
		phase      Phase
		wantFailed bool
	}{{PhaseHandedOver, true}, {PhaseInstalling, false}, {PhaseCompleted, false}} {
		t.Run(string(tt.phase), func(t *testing.T) {
			w := &world{running: mA, staged: true, verifies: false, files: map[string]tee.Measurement{}, journal: rec(tt.phase)}
			if _, err := w.step(t, ""); err != nil {
				t.Fatal(err)
			}
			if tt.wantFailed != (w.journal.Phase == PhaseFailed) || tt.wantFailed == w.refused {
				t.Fatalf("phase %s, refused %t; want failed %t", w.journal.Phase, w.refused, tt.wantFailed)
			}
		})
	}
}

func ExampleDecide() {
	a := Decide(nil, Observation{Self: mA, Wanted: tB, Now: t0})
	fmt.Println(a.Kind, a.Then, a.Target.Version)
	// Output: begin started 2.0.0
}
