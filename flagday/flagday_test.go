package flagday

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
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
	ok := Topology{ChainID: "c", Hosts: []Host{{ID: 1, AdminSocket: "a", AgentSocket: "b"}}, OperatorKeys: []string{"x", "y"},
		OperatorKey: "op.key", Root: "root.crt", NodeMREnclaves: []string{"aa"}, AgentMREnclaves: []string{"bb"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	remote := ok
	remote.Hosts = []Host{{ID: 1, AdminAddr: "a.example:7301", AgentAddr: "a.example:7401"}, {ID: 2, AdminAddr: "b.example:7301", AgentSocket: "/s/agent.sock"}}
	if err := remote.Validate(); err != nil {
		t.Fatalf("remote topology: %v", err)
	}
	tests := []struct {
		name string
		mut  func(*Topology)
		want string
	}{
		{"no chain", func(t *Topology) { t.ChainID = "" }, "chain id"},
		{"no hosts", func(t *Topology) { t.Hosts = nil }, "host"},
		{"missing socket", func(t *Topology) { t.Hosts = []Host{{ID: 1, AdminSocket: "a"}} }, "agent_socket"},
		{"duplicate host", func(t *Topology) { t.Hosts = append(t.Hosts, t.Hosts[0]) }, "twice"},
		{"no node id", func(t *Topology) { t.Hosts = []Host{{AdminSocket: "a", AgentSocket: "b"}} }, "node id"},
		{"same admin socket, two ids", func(t *Topology) { t.Hosts = append(t.Hosts, Host{ID: 2, AdminSocket: "./a", AgentSocket: "c"}) }, "the same host twice"},
		{"same agent socket, two ids", func(t *Topology) { t.Hosts = append(t.Hosts, Host{ID: 2, AdminSocket: "c", AgentSocket: "b"}) }, "the same host twice"},
		{"a host's agent socket is its admin socket", func(t *Topology) { t.Hosts = []Host{{ID: 1, AdminSocket: "a", AgentSocket: "a"}} }, "the same host twice"},
		{"socket and address for one API", func(t *Topology) { t.Hosts[0].AdminAddr = "h:1" }, "give one"},
		{"same address, two spellings", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminAddr: "Host.Example:7301", AgentAddr: "host.example:7401"}, {ID: 2, AdminAddr: "host.example.:07301", AgentAddr: "b:7401"}}
		}, "the same host twice"},
		{"same IP, two spellings", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminAddr: "10.0.0.1:7301", AgentSocket: "s1"}, {ID: 2, AdminAddr: "[::ffff:10.0.0.1]:7301", AgentSocket: "s2"}}
		}, "the same host twice"},
		{"admin address is another host's agent address", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminAddr: "a:1", AgentAddr: "a:2"}, {ID: 2, AdminAddr: "a:2", AgentAddr: "b:2"}}
		}, "the same host twice"},
		{"bad address", func(t *Topology) { t.Hosts = []Host{{ID: 1, AdminAddr: "nohostport", AgentSocket: "b"}} }, "address"},
		{"remote without operator key", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminAddr: "a:1", AgentSocket: "b"}}
			t.OperatorKey = ""
		}, "operator_key"},
		{"remote nodes without measurements", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminAddr: "a:1", AgentSocket: "b"}}
			t.NodeMREnclaves = nil
		}, "node_mrenclaves"},
		{"remote agents without measurements", func(t *Topology) {
			t.Hosts = []Host{{ID: 1, AdminSocket: "a", AgentAddr: "a:2"}}
			t.AgentMREnclaves = nil
		}, "agent_mrenclaves"},
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
	if ev, err := os.ReadFile(dir.Events()); err != nil || !bytes.Contains(ev, []byte(`"kind":"check"`)) {
		t.Fatalf("events = %s, %v", ev, err)
	}
	// A corrupt journal is an error, not a silent fresh start.
	if err := os.WriteFile(dir.Journal(), []byte("{"), 0o644); err != nil {
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
	if err := os.MkdirAll(layout.FlagDaysUnder(root).FlagDay(rec.ID).Dir(), 0o755); err != nil {
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

// TestPlanReportsUnreachableHosts: a host whose node or agent does not
// answer makes the plan an error (ErrUnreachable) naming it, not a "down"
// row and success.
func TestPlanReportsUnreachableHosts(t *testing.T) {
	dir := t.TempDir()
	var keys []string
	for _, name := range []string{"k1", "k2"} {
		p := filepath.Join(dir, name)
		if _, err := keyfile.Generate(p); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p)
	}
	top := Topology{ChainID: "c", OperatorKeys: keys, Hosts: []Host{
		{ID: 1, AdminSocket: filepath.Join(dir, "n1.sock"), AgentSocket: filepath.Join(dir, "a1.sock")},
		{ID: 2, AdminSocket: filepath.Join(dir, "n2.sock"), AgentSocket: filepath.Join(dir, "a2.sock")},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Plan(ctx, Options{Root: dir, Topology: top, Version: "2.0.0"})
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Plan = %v, want ErrUnreachable", err)
	}
	if p == nil || len(p.Nodes) != 2 || p.Nodes[0].Error == "" || p.Nodes[1].Error == "" {
		t.Fatalf("plan nodes %+v", p)
	}
	var b bytes.Buffer
	PrintPlan(&b, p)
	if !strings.Contains(b.String(), "host 2 UNREACHABLE") {
		t.Fatalf("plan:\n%s", b.String())
	}
}

// TestPlanRefusesAHostThatAnswersAsAnother: two topology entries that
// reach the same host under different socket names (here a symlink) are
// caught at run time: the second entry's node answers as node 1, and the
// coordinator's client, addressing node 2, refuses it.
func TestPlanRefusesAHostThatAnswersAsAnother(t *testing.T) {
	dir := t.TempDir()
	serve := func(name string, id uint64, body string) string {
		sock := filepath.Join(dir, name)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		h := remoteadmin.CheckNodeID(id, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		}))
		srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return sock
	}
	node1 := serve("n1.sock", 1, `{"node_id":1}`)
	agent1 := serve("a1.sock", 1, `{"node_id":1}`)
	alias := filepath.Join(dir, "n2.sock")
	if err := os.Symlink(node1, alias); err != nil {
		t.Fatal(err)
	}
	agent2 := serve("a2.sock", 2, `{"node_id":2}`)
	var keys []string
	for _, name := range []string{"k1", "k2"} {
		p := filepath.Join(dir, name)
		if _, err := keyfile.Generate(p); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p)
	}
	top := Topology{ChainID: "c", OperatorKeys: keys, Hosts: []Host{
		{ID: 1, AdminSocket: node1, AgentSocket: agent1},
		{ID: 2, AdminSocket: alias, AgentSocket: agent2},
	}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Plan(ctx, Options{Root: dir, Topology: top, Version: "2.0.0"})
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, remoteadmin.ErrWrongNode) {
		t.Fatalf("Plan = %v, want ErrUnreachable and ErrWrongNode", err)
	}
	if p.Nodes[0].Error != "" || !strings.Contains(p.Nodes[1].Error, "node 2") {
		t.Fatalf("plan nodes %+v", p.Nodes)
	}
}
