package flagday

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee"
)

func TestStepsFor(t *testing.T) {
	s := stepsFor(Scheduled, false)
	if s[0] != StepPreflight || s[1] != StepSchedule || s[len(s)-1] != StepLive {
		t.Fatalf("scheduled steps %v", s)
	}
	m := stepsFor(Manual, true)
	for _, name := range m {
		if name == StepSchedule {
			t.Fatal("manual mode schedules on chain")
		}
		if _, ok := stepChecks[name]; !ok {
			t.Fatalf("step %s has no documented checks", name)
		}
	}
	if m[len(m)-1] != StepFinalize {
		t.Fatalf("manual steps %v", m)
	}
	// Reopen comes after every verification: nothing unverified reopens.
	idx := func(l []string, n string) int {
		for i, x := range l {
			if x == n {
				return i
			}
		}
		return -1
	}
	for _, l := range [][]string{s, m} {
		for _, before := range []string{StepVerifyChain, StepAttest, StepPayments} {
			if idx(l, before) > idx(l, StepReopen) {
				t.Fatalf("%s after reopen-ingress in %v", before, l)
			}
		}
	}
}

func TestTopologyValidate(t *testing.T) {
	ok := Topology{ChainID: "c", Hosts: []Host{{ID: 1, AdminSocket: "a", AgentSocket: "b"}}, OperatorKeys: []string{"x", "y"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mut  func(*Topology)
		want string
	}{
		{"no chain", func(t *Topology) { t.ChainID = "" }, "chain id"},
		{"no hosts", func(t *Topology) { t.Hosts = nil }, "host"},
		{"missing socket", func(t *Topology) { t.Hosts = []Host{{ID: 1, AdminSocket: "a"}} }, "agent socket"},
		{"duplicate host", func(t *Topology) { t.Hosts = append(t.Hosts, t.Hosts[0]) }, "twice"},
		{"one operator key", func(t *Topology) { t.OperatorKeys = []string{"x"} }, "operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top := ok
			top.Hosts = append([]Host(nil), ok.Hosts...)
			tt.mut(&top)
			if err := top.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestJournalPersistsAndResumes(t *testing.T) {
	root := t.TempDir()
	rec := Record{ID: "2.0.0-x", Version: "2.0.0", Mode: Manual, Outcome: OutcomeRunning,
		Steps: []StepState{{Name: StepPreflight, Status: StepPending}}}
	j, err := createJournal(root, rec)
	if err != nil {
		t.Fatal(err)
	}
	closed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := j.update(func(r *Record) {
		r.IngressClosedAt, r.IngressReopenedAt = closed, closed.Add(4*time.Second)
		r.step(StepPreflight).Status = StepDone
	}); err != nil {
		t.Fatal(err)
	}
	j.event(Event{Kind: "check", Detail: "x"})
	got, dir, err := LoadCurrent(root)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != rec.ID || got.step(StepPreflight).Status != StepDone || got.Downtime() != 4*time.Second {
		t.Fatalf("reloaded %+v", got)
	}
	if ev, err := os.ReadFile(filepath.Join(dir, "events.jsonl")); err != nil || !bytes.Contains(ev, []byte(`"kind":"check"`)) {
		t.Fatalf("events = %s, %v", ev, err)
	}
	// A corrupt journal is an error, not a silent fresh start.
	if err := os.WriteFile(filepath.Join(dir, "journal.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCurrent(root); !errors.Is(err, ErrCorruptJournal) {
		t.Fatalf("LoadCurrent(corrupt) = %v", err)
	}
	if _, err := Current(t.TempDir()); err == nil {
		t.Fatal("Current on an empty root")
	}
}

func TestSummarizeAndReport(t *testing.T) {
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := &Record{ID: "2.0.0-x", Mode: Scheduled, Version: "2.0.0", FromVersion: "1.0.0", Outcome: OutcomeCompleted,
		FromMREnclave: tee.Measurement{1}, ToMREnclave: tee.Measurement{2}, ActivationHeight: 35,
		StartedAt: start, FinishedAt: start.Add(12 * time.Second), IngressClosedAt: start.Add(2 * time.Second), IngressReopenedAt: start.Add(7 * time.Second),
		Steps: []StepState{{Name: StepHalt, Status: StepDone, Duration: 2 * time.Second, Detail: "all 4 nodes halted at height 35"}},
		Hosts: []HostResult{{ID: 1, HeightAtHalt: 35, HashAtHalt: "abcdef0123456789abcdef", Snapshot: &SnapshotInfo{Name: "s1", Files: 7, Checksum: "0123456789abcdef0123"},
			Upgrade: &agentapi.UpgradeRecord{Steps: []agentapi.StepTiming{{Phase: agentapi.PhaseOldStopped, Duration: 50 * time.Millisecond}, {Phase: agentapi.PhaseNewServing, Duration: 200 * time.Millisecond}, {Phase: agentapi.PhaseSnapshotTaken, Duration: time.Second}}}}},
		TestTxs: []TestTx{{Kind: "self", TxID: "aa", Height: 37, Node: 1}},
	}
	var b bytes.Buffer
	Summarize(&b, rec)
	out := b.String()
	for _, want := range []string{"completed", "downtime 5s", "halt-at-height", "s1", "250ms", "test self payment aa"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(Dir(root), rec.ID), 0o755); err != nil {
		t.Fatal(err)
	}
	p, err := WriteReport(root, rec)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(p)
	if err != nil || !bytes.Contains(raw, []byte(`"downtime": "5s"`)) {
		t.Fatalf("report = %s, %v", raw, err)
	}
}

func TestProgressTablePrintsOnChange(t *testing.T) {
	var b bytes.Buffer
	p := newProgressTable(&b, []Host{{ID: 1}, {ID: 2}})
	sts := map[uint64]*nodeapi.Status{1: {Height: 5, Ingress: nodeapi.IngressClosed}}
	p.render(sts, nil, 10)
	n := b.Len()
	p.render(sts, nil, 10)
	if b.Len() != n {
		t.Fatal("an unchanged table was printed again")
	}
	sts[1].Height = 6
	p.render(sts, nil, 10)
	if b.Len() == n || !strings.Contains(b.String(), "down") {
		t.Fatalf("table:\n%s", b.String())
	}
}

func TestRunRefusesWithoutVersionOrNetwork(t *testing.T) {
	_, err := Run(context.Background(), Options{Root: t.TempDir(), Topology: Topology{ChainID: "c",
		Hosts: []Host{{ID: 1, AdminSocket: "/nonexistent/a.sock", AgentSocket: "/nonexistent/b.sock"}}, OperatorKeys: []string{"/nonexistent/k1", "/nonexistent/k2"}}})
	if err == nil {
		t.Fatal("Run without keys or version succeeded")
	}
	_, err = Abort(context.Background(), Options{Root: t.TempDir(), Topology: Topology{}}, "x")
	if err == nil {
		t.Fatal("Abort with an empty topology succeeded")
	}
}
