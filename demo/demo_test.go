package demo

import (
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/ledger"
)

// TestV2RunsTheNewestSchema: the demo's 2.0.0 (and so the flag-day e2e
// test) migrates to the newest schema this source has.
func TestV2RunsTheNewestSchema(t *testing.T) {
	if newest := ledger.NewestSchema(ledger.DefaultMigrations()); V2Schema != newest || V1Schema >= V2Schema {
		t.Fatalf("demo schemas %d -> %d, the newest is %d", V1Schema, V2Schema, newest)
	}
}

// TestBreakDown: the client downtime is the longest gap between
// acknowledgements in the window, and its segments, cut at the flag day's
// milestones in order, add up to it; per host the journal's times give the
// poll, the handover, the proof and readiness → ready.
func TestBreakDown(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	acks := []time.Time{at(-5000), at(300), at(0), at(100), at(3600), at(3650), at(20000)}
	host := func(id uint64, start, served, sent, ready int) HostMilestones {
		opt := func(ms int) time.Time { // 0: not yet
			if ms == 0 {
				return time.Time{}
			}
			return at(ms)
		}
		return HostMilestones{ID: id, State: &agentapi.FlagDayState{HandoverStartedAt: at(start), HandedOverAt: at(served), ReadinessSentAt: opt(sent), ReadyAt: opt(ready)},
			Upgrade: &agentapi.UpgradeRecord{Steps: []agentapi.StepTiming{{Phase: "new-serving", Duration: 200 * time.Millisecond}}}}
	}
	m := Milestones{
		IngressClosed: at(350), Halt: at(1300), FirstNew: at(2100), Ready: at(3300), Quorum: 3,
		Hosts: []HostMilestones{host(1, 1500, 1900, 3000, 3400), host(2, 1400, 1800, 3100, 3400), host(3, 1600, 2000, 3200, 3450), host(4, 1700, 2600, 0, 0)},
	}
	d := BreakDown(acks, at(-1000), at(10000), m)
	if d.Client != 3300*time.Millisecond || !d.GapStart.Equal(at(300)) || !d.GapEnd.Equal(at(3600)) {
		t.Fatalf("client downtime %s from %s to %s, want 3.3s from +300ms", d.Client, d.GapStart, d.GapEnd)
	}
	if d.Ingress != 2950*time.Millisecond {
		t.Errorf("ingress closed → ready %s, want 2.95s", d.Ingress)
	}
	want := []time.Duration{1000, 700, 100, 1200, 300} // reach H, quorum handover (host 3 at 2000), first commit, readiness, reopen
	var sum time.Duration
	for i, s := range d.Steps {
		sum += s.Duration
		if i < len(want) && s.Duration != want[i]*time.Millisecond {
			t.Errorf("step %q = %s, want %dms", s.Name, s.Duration, want[i])
		}
	}
	if len(d.Steps) != len(want) || sum != d.Client {
		t.Fatalf("%d steps adding up to %s, want %d adding up to %s", len(d.Steps), sum, len(want), d.Client)
	}
	h2 := d.Hosts[1]
	if h2.Poll != 100*time.Millisecond || h2.Handover != 400*time.Millisecond || h2.Proof != 1300*time.Millisecond || h2.Ready != 300*time.Millisecond || len(h2.Steps) != 1 {
		t.Errorf("host 2 %+v", h2)
	}
	if h4 := d.Hosts[3]; h4.Proof != 0 || h4.Ready != 0 {
		t.Errorf("host 4 never sent readiness: %+v", h4)
	}
}

// TestBreakDownClampsMissingMilestones: a milestone missing or out of
// order gives an empty segment, never a negative one, and the segments
// still add up to the client downtime.
func TestBreakDownClampsMissingMilestones(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name string
		m    Milestones
	}{
		{"none", Milestones{}},
		{"before the gap", Milestones{Halt: at(-100), FirstNew: at(-50)}},
		{"after the gap", Milestones{Halt: at(500), Ready: at(9000)}},
	} {
		d := BreakDown([]time.Time{at(0), at(2000)}, at(-1), at(5000), tc.m)
		var sum time.Duration
		for _, s := range d.Steps {
			if s.Duration < 0 {
				t.Errorf("%s: step %q negative: %s", tc.name, s.Name, s.Duration)
			}
			sum += s.Duration
		}
		if d.Client != 2*time.Second || sum != d.Client {
			t.Errorf("%s: downtime %s, steps add up to %s", tc.name, d.Client, sum)
		}
	}
	// Acknowledgements read from time.Now carry a monotonic reading, block
	// times do not: the segments still add up to the gap exactly.
	now := time.Now()
	mono := []time.Time{now, now.Add(2*time.Second + 1)}
	d := BreakDown(mono, now.Add(-time.Second), now.Add(5*time.Second), Milestones{Halt: now.Round(0).Add(700 * time.Millisecond), Ready: now.Round(0).Add(1500 * time.Millisecond)})
	var sum time.Duration
	for _, s := range d.Steps {
		sum += s.Duration
	}
	if sum != d.Client || d.Client != 2*time.Second+1 {
		t.Errorf("monotonic acknowledgements: steps add up to %s, downtime %s", sum, d.Client)
	}
	if d := BreakDown(nil, at(0), at(1), Milestones{}); d.Client != 0 || servedAgain(d) == nil {
		t.Errorf("no acknowledgements: %+v, served again %v", d, servedAgain(d))
	}
}
