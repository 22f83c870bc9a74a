package flagday

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/remoteadmin"
	"github.com/teeup/teeup/tee"
)

var (
	mrOld = tee.Measurement{1}
	mrNew = tee.Measurement{2}
)

// approvedGovernance is a chain running 1.0.0 with 2.0.0 (node MRENCLAVE
// mrNew) approved.
func approvedGovernance(t *testing.T) *nodeapi.Governance {
	t.Helper()
	raw, err := json.Marshal(release.SignedRelease{Manifest: release.Manifest{NetworkID: "c", Version: "2.0.0", Node: release.Component{MREnclave: mrNew}}})
	if err != nil {
		t.Fatal(err)
	}
	return &nodeapi.Governance{ChainID: "c", Height: 30, Quorum: 2, RunningRelease: "1.0.0",
		Releases: []nodeapi.ReleaseInfo{{Version: "2.0.0", NodeMREnclave: mrNew, ApprovedAt: 12, Approvers: []string{"a", "b"}, Release: raw}}}
}

func healthyNode(id uint64) *nodeapi.Status {
	return &nodeapi.Status{NodeID: id, Phase: nodeapi.PhaseRunning, Version: "1.0.0", MREnclave: mrOld, Leader: 1, Height: 30,
		Ingress: nodeapi.IngressOpen, Sync: nodeapi.Sync{State: nodeapi.SyncCurrent}}
}

func readyAgent(id uint64) *agentapi.Status {
	return &agentapi.Status{NodeID: id, Staged: []string{"1.0.0", "2.0.0"}, FlagDayMode: agentapi.FlagDayCoordinatorFree}
}

func healthyHost(id uint64) HostCheck {
	return HostCheck{ID: id, Node: healthyNode(id), Agent: readyAgent(id), FlagDay: &agentapi.FlagDayState{}}
}

// TestCheckPreflight: each rule names its blocker on the host it blocks
// (host 0: the network), and a healthy network has none.
func TestCheckPreflight(t *testing.T) {
	base := func(t *testing.T) PreflightInput {
		return PreflightInput{Version: "2.0.0", Want: agentapi.FlagDayCoordinatorFree, RequireStaged: true, Governance: approvedGovernance(t),
			Hosts: []HostCheck{healthyHost(1), healthyHost(2), healthyHost(3)}}
	}
	type want struct {
		host uint64
		kind BlockerKind
	}
	for _, tt := range []struct {
		name string
		mut  func(*PreflightInput)
		want []want
		is   error
	}{
		{"healthy", func(*PreflightInput) {}, nil, nil},
		{"release not staged", func(in *PreflightInput) { in.Hosts[1].Agent.Staged = []string{"1.0.0"} }, []want{{2, BlockNotStaged}}, nil},
		{"not staged, but the coordinator pushes it", func(in *PreflightInput) {
			in.Hosts[1].Agent.Staged, in.RequireStaged = nil, false
		}, nil, nil},
		{"previous upgrade not finalized", func(in *PreflightInput) {
			in.Hosts[2].Agent.Upgrade = &agentapi.UpgradeRecord{Phase: agentapi.PhaseCompleted, To: agentapi.Installation{Version: "1.0.0"}}
		}, []want{{3, BlockPreviousUpgrade}}, nil},
		{"a finalized previous upgrade", func(in *PreflightInput) {
			in.Hosts[2].Agent.Upgrade = &agentapi.UpgradeRecord{Phase: agentapi.PhaseFinalized, To: agentapi.Installation{Version: "1.0.0"}}
		}, nil, nil},
		{"previous flag day unsettled", func(in *PreflightInput) {
			in.Hosts[0].FlagDay = &agentapi.FlagDayState{Version: "1.0.0", ActivationHeight: 9, Stage: decide.StageReady}
		}, []want{{1, BlockPreviousUpgrade}}, nil},
		{"node leaderless and catching up", func(in *PreflightInput) {
			in.Hosts[0].Node.Leader, in.Hosts[0].Node.Sync.State = 0, nodeapi.SyncCatchingUp
		}, []want{{1, BlockUnhealthy}}, nil},
		{"node halted", func(in *PreflightInput) { in.Hosts[1].Node.Halted = true }, []want{{2, BlockUnhealthy}}, nil},
		{"agent refuses to start the node", func(in *PreflightInput) {
			in.Hosts[1].Agent.NodeRefused = &agentapi.StartRefusal{Cause: agentapi.CauseBinaryRejected}
		}, []want{{2, BlockUnhealthy}}, nil},
		{"node on a third enclave", func(in *PreflightInput) { in.Hosts[2].Node.MREnclave = tee.Measurement{9} }, []want{{3, BlockMixedVersions}}, nil},
		{"node answers as another node", func(in *PreflightInput) { in.Hosts[1].Node.NodeID = 1 }, []want{{2, BlockWrongNode}}, remoteadmin.ErrWrongNode},
		{"client refused another node's answer", func(in *PreflightInput) {
			in.Hosts[1].Node, in.Hosts[1].NodeErr = nil, fmt.Errorf("status: %w: node 1 answered", remoteadmin.ErrWrongNode)
		}, []want{{2, BlockWrongNode}}, remoteadmin.ErrWrongNode},
		{"agent answers as another node's", func(in *PreflightInput) { in.Hosts[2].Agent.NodeID = 2 }, []want{{3, BlockWrongNode}}, remoteadmin.ErrWrongNode},
		{"unreachable node and agent", func(in *PreflightInput) {
			in.Hosts[0].Node, in.Hosts[0].NodeErr = nil, errors.New("dial: refused")
			in.Hosts[0].Agent, in.Hosts[0].AgentErr = nil, errors.New("dial: refused")
		}, []want{{1, BlockUnreachable}, {1, BlockUnreachable}}, ErrUnreachable},
		{"duplicate entry", func(in *PreflightInput) {
			in.Duplicates = []Blocker{{Host: 3, Kind: BlockDuplicate, Detail: "host 3's node socket a is also host 1's node socket a: the same host twice"}}
		}, []want{{3, BlockDuplicate}}, nil},
		{"coordinated agent", func(in *PreflightInput) { in.Hosts[1].Agent.FlagDayMode = agentapi.FlagDayCoordinated }, []want{{2, BlockMode}}, ErrAgentsCoordinated},
		{"agent predating modes counts as coordinated", func(in *PreflightInput) { in.Hosts[1].Agent.FlagDayMode = "" }, []want{{2, BlockMode}}, ErrAgentsCoordinated},
		{"coordinator-free agent under the coordinator", func(in *PreflightInput) {
			in.Want = agentapi.FlagDayCoordinated
			in.Hosts[0].Agent.FlagDayMode = ""
		}, []want{{2, BlockMode}, {3, BlockMode}}, ErrAgentsCoordinatorFree},
		{"downgrade", func(in *PreflightInput) { in.Governance.RunningRelease = "2.0.0" }, []want{{0, BlockDowngrade}}, ErrDowngrade},
		{"not approved", func(in *PreflightInput) { in.Governance.Releases[0].ApprovedAt = 0 }, []want{{0, BlockNotApproved}}, nil},
		{"never proposed", func(in *PreflightInput) { in.Version = "2.1.0" }, []want{{0, BlockNotApproved}, {1, BlockNotStaged}, {2, BlockNotStaged}, {3, BlockNotStaged}}, nil},
		{"no enclave change", func(in *PreflightInput) {
			for _, h := range in.Hosts {
				h.Node.MREnclave = mrNew
			}
		}, []want{{0, BlockNoEnclaveChange}}, nil},
		{"another schedule", func(in *PreflightInput) {
			in.Governance.Schedule = &nodeapi.ScheduleInfo{Version: "1.5.0", ActivationHeight: 50}
		}, []want{{0, BlockOtherSchedule}}, nil},
		{"no governance", func(in *PreflightInput) { in.Governance = nil }, []want{{0, BlockUnreachable}}, ErrUnreachable},
	} {
		t.Run(tt.name, func(t *testing.T) {
			in := base(t)
			tt.mut(&in)
			rep := CheckPreflight(in)
			var got []want
			for _, b := range rep.Blockers {
				got = append(got, want{b.Host, b.Kind})
				if b.Detail == "" {
					t.Errorf("blocker %v without a detail", b)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("blockers %v, want %v", rep.Blockers, tt.want)
			}
			err := rep.Err()
			if (err == nil) != (len(tt.want) == 0) {
				t.Fatalf("Err() = %v", err)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Fatalf("Err() = %v, want errors.Is %v", err, tt.is)
			}
			if len(tt.want) == 0 && (rep.From != mrOld || rep.To != mrNew || rep.FromVersion != "1.0.0") {
				t.Fatalf("report %+v", rep)
			}
		})
	}
}

// TestTopologyDuplicates: the entries Validate refuses as the same host
// twice are each named once, on the later entry.
func TestTopologyDuplicates(t *testing.T) {
	top := Topology{ChainID: "c", OperatorKeys: []string{"x", "y"}, Hosts: []Host{
		{ID: 1, AdminSocket: "/s/n1", AgentSocket: "/s/a1"},
		{ID: 2, AdminSocket: "/s/../s/n1", AgentSocket: "/s/a2"},
		{ID: 1, AdminSocket: "/s/n3", AgentSocket: "/s/a3"},
	}}
	d := top.duplicates()
	if len(d) != 2 || d[0].Host != 2 || d[1].Host != 1 || !strings.Contains(d[0].Detail, "the same host twice") || !strings.Contains(d[1].Detail, "listed twice") {
		t.Fatalf("duplicates %v", d)
	}
	if err := top.validateShape(); err != nil {
		t.Fatalf("validateShape: %v", err)
	}
	if err := top.Validate(); err == nil || !strings.Contains(err.Error(), "the same host twice") {
		t.Fatalf("Validate = %v", err)
	}
}

// fakeHost serves a node admin API and an agent API on unix sockets, as
// node id (remoteadmin.CheckNodeID), answering with the handlers' values.
type fakeHost struct {
	mu      sync.Mutex
	node    *nodeapi.Status
	agent   *agentapi.Status
	flagDay *agentapi.FlagDayState
	gov     *nodeapi.Governance
	chain   *nodeapi.FlagDay
}

func serveFake(t *testing.T, dir string, id uint64, f *fakeHost) Host {
	t.Helper()
	reply := func(get func() any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			f.mu.Lock()
			v := get()
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	serve := func(name string, h http.Handler) string {
		sock := filepath.Join(dir, name)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: remoteadmin.CheckNodeID(id, h), ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return sock
	}
	node := http.NewServeMux()
	node.HandleFunc("GET "+nodeapi.PathStatus, reply(func() any { return f.node }))
	node.HandleFunc("GET "+nodeapi.PathReleases, reply(func() any { return f.gov }))
	node.HandleFunc("GET "+nodeapi.PathFlagDay, reply(func() any { return f.chain }))
	agent := http.NewServeMux()
	agent.HandleFunc("GET "+agentapi.PathStatus, reply(func() any { return f.agent }))
	agent.HandleFunc("GET "+agentapi.PathFlagDay, reply(func() any { return f.flagDay }))
	return Host{ID: id, AdminSocket: serve(fmt.Sprintf("n%d.sock", id), node), AgentSocket: serve(fmt.Sprintf("a%d.sock", id), agent)}
}

// fakeNet is three healthy coordinator-free hosts on the eve of the flag
// day to 2.0.0.
func fakeNet(t *testing.T) (Topology, []*fakeHost) {
	t.Helper()
	dir := t.TempDir()
	var keys []string
	for _, name := range []string{"k1", "k2"} {
		p := filepath.Join(dir, name)
		if _, err := keyfile.Generate(p); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, p)
	}
	top := Topology{ChainID: "c", OperatorKeys: keys}
	var hosts []*fakeHost
	for id := uint64(1); id <= 3; id++ {
		f := &fakeHost{node: healthyNode(id), agent: readyAgent(id), flagDay: &agentapi.FlagDayState{}, gov: approvedGovernance(t), chain: &nodeapi.FlagDay{}}
		hosts = append(hosts, f)
		top.Hosts = append(top.Hosts, serveFake(t, dir, id, f))
	}
	return top, hosts
}

// fakeVoter records its votes; when it votes, every host's agent reports
// the flag day done with outcome.
type fakeVoter struct {
	hosts   []*fakeHost
	outcome string
	votes   []uint64
}

func (v *fakeVoter) Member() string { return "me" }

func (v *fakeVoter) VoteSchedule(_ context.Context, _ *nodeapi.AdminClient, version string, h uint64) error {
	v.votes = append(v.votes, h)
	settle(v.hosts, version, h, v.outcome)
	return nil
}

func settle(hosts []*fakeHost, version string, h uint64, outcome string) {
	for _, f := range hosts {
		f.mu.Lock()
		f.flagDay = &agentapi.FlagDayState{Version: version, ActivationHeight: h, Stage: decide.StageDone, Outcome: outcome}
		f.mu.Unlock()
	}
}

// TestRunFree: the observer path casts only its operator's vote (at the
// height asked, the one another member voted, or --in above the head;
// none when the vote is on chain or without a key), observes the flag day
// it voted for until every host settled, and touches no host otherwise.
func TestRunFree(t *testing.T) {
	for _, tt := range []struct {
		name      string
		height    uint64
		pending   []nodeapi.ScheduleVote
		voter     bool
		wantVote  VoteOutcome
		wantH     uint64
		wantVotes int
	}{
		{"vote at the height asked", 60, nil, true, VoteCast, 60, 1},
		{"join the height another member voted", 0, []nodeapi.ScheduleVote{{Member: "other", Version: "2.0.0", ActivationHeight: 55}}, true, VoteCast, 55, 1},
		{"in blocks above the head", 0, nil, true, VoteCast, 30 + 15, 1},
		{"own vote on chain already", 0, []nodeapi.ScheduleVote{{Member: "me", Version: "2.0.0", ActivationHeight: 55}}, true, VoteOnChain, 55, 0},
		{"no key: no vote", 50, nil, false, VoteNoKey, 50, 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top, hosts := fakeNet(t)
			for _, f := range hosts {
				f.gov.PendingSchedules = tt.pending
			}
			v := &fakeVoter{hosts: hosts, outcome: decide.OutcomeReady}
			opt := FreeOptions{Topology: top, Version: "2.0.0", Height: tt.height, Interval: 10 * time.Millisecond}
			if tt.voter {
				opt.Voter = v
			}
			if tt.wantVotes == 0 {
				settle(hosts, "2.0.0", tt.wantH, decide.OutcomeReady)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			run, err := RunFree(ctx, opt)
			if err != nil {
				t.Fatalf("RunFree: %v", err)
			}
			if run.Vote != tt.wantVote || run.ActivationHeight != tt.wantH || len(v.votes) != tt.wantVotes {
				t.Fatalf("vote %s at %d (%d votes), want %s at %d (%d)", run.Vote, run.ActivationHeight, len(v.votes), tt.wantVote, tt.wantH, tt.wantVotes)
			}
			o := run.Observation
			if !o.Settled || o.Outcome != decide.OutcomeReady || o.Version != "2.0.0" || o.ActivationHeight != tt.wantH || len(o.Hosts) != 3 {
				t.Fatalf("observation %+v", o)
			}
		})
	}
}

// TestRunFreeObservesOnlyItsFlagDay: agents that settled an earlier flag
// day do not end the observation of the new one.
func TestRunFreeObservesOnlyItsFlagDay(t *testing.T) {
	top, hosts := fakeNet(t)
	settle(hosts, "1.0.0", 9, decide.OutcomeReady)
	for _, f := range hosts {
		f.gov.Schedule = &nodeapi.ScheduleInfo{Version: "2.0.0", ActivationHeight: 40}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rounds := 0
	progress := writerFunc(func(p []byte) {
		if strings.HasPrefix(string(p), "flag day to 2.0.0 at height 40") {
			if rounds++; rounds == 3 {
				settle(hosts, "2.0.0", 40, decide.OutcomeAborted)
			}
		}
	})
	run, err := RunFree(ctx, FreeOptions{Topology: top, Version: "2.0.0", Interval: 10 * time.Millisecond, Progress: progress})
	if err != nil {
		t.Fatalf("RunFree: %v", err)
	}
	if run.Vote != VoteNotNeeded || rounds < 3 || run.Observation.Outcome != decide.OutcomeAborted {
		t.Fatalf("vote %s after %d rounds, outcome %q", run.Vote, rounds, run.Observation.Outcome)
	}
}

type writerFunc func(p []byte)

func (f writerFunc) Write(p []byte) (int, error) { f(p); return len(p), nil }

// TestRunFreeRefuses: the preflight refuses, naming the host, and casts
// no vote: an entry that answers as another node, a host listed twice,
// coordinated agents (which belong to the coordinator), an unstaged
// release.
func TestRunFreeRefuses(t *testing.T) {
	for _, tt := range []struct {
		name string
		mut  func(t *testing.T, top *Topology, hosts []*fakeHost)
		host uint64
		kind BlockerKind
		is   error
	}{
		{"an entry answers as another node", func(t *testing.T, top *Topology, _ []*fakeHost) {
			alias := filepath.Join(filepath.Dir(top.Hosts[0].AdminSocket), "alias.sock")
			if err := os.Symlink(top.Hosts[0].AdminSocket, alias); err != nil {
				t.Fatal(err)
			}
			top.Hosts[2].AdminSocket = alias
		}, 3, BlockWrongNode, remoteadmin.ErrWrongNode},
		{"a host listed twice", func(_ *testing.T, top *Topology, _ []*fakeHost) {
			top.Hosts[2].AgentSocket = top.Hosts[1].AgentSocket
		}, 3, BlockDuplicate, nil},
		{"coordinated agents", func(_ *testing.T, _ *Topology, hosts []*fakeHost) {
			hosts[1].agent.FlagDayMode = agentapi.FlagDayCoordinated
		}, 2, BlockMode, ErrAgentsCoordinated},
		{"release not staged", func(_ *testing.T, _ *Topology, hosts []*fakeHost) {
			hosts[0].agent.Staged = []string{"1.0.0"}
		}, 1, BlockNotStaged, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			top, hosts := fakeNet(t)
			tt.mut(t, &top, hosts)
			v := &fakeVoter{hosts: hosts}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			run, err := RunFree(ctx, FreeOptions{Topology: top, Version: "2.0.0", Height: 60, Voter: v})
			var pe *PreflightError
			if !errors.As(err, &pe) || (tt.is != nil && !errors.Is(err, tt.is)) {
				t.Fatalf("RunFree = %v, want a preflight refusal (%v)", err, tt.is)
			}
			if !slices.ContainsFunc(pe.Blockers, func(b Blocker) bool { return b.Host == tt.host && b.Kind == tt.kind }) {
				t.Fatalf("blockers %v, want %s on host %d", pe.Blockers, tt.kind, tt.host)
			}
			if len(v.votes) != 0 || run.Vote != "" || run.Observation != nil {
				t.Fatalf("voted %v / observed after a refusal: %+v", v.votes, run)
			}
		})
	}
}

// TestCoordinatorRefusesCoordinatorFreeAgents: with any host's agent
// coordinator-free, every coordinator entry that acts refuses
// (ErrAgentsCoordinatorFree) before it journals or changes anything.
func TestCoordinatorRefusesCoordinatorFreeAgents(t *testing.T) {
	top, hosts := fakeNet(t)
	for _, f := range hosts[:2] {
		f.agent.FlagDayMode = agentapi.FlagDayCoordinated
	}
	root := t.TempDir()
	opt := Options{Root: root, Topology: top, Version: "2.0.0"}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for name, call := range map[string]func() error{
		"coordinate": func() error { _, err := Run(ctx, opt); return err },
		"step":       func() error { _, err := RunStep(ctx, opt, StepPreflight); return err },
		"abort":      func() error { _, err := Abort(ctx, opt, "x"); return err },
		"rollback":   func() error { _, _, err := RollbackCompleted(ctx, opt, false, "x"); return err },
	} {
		err := call()
		var pe *PreflightError
		if !errors.Is(err, ErrAgentsCoordinatorFree) || !errors.As(err, &pe) || len(pe.Blockers) != 1 || pe.Blockers[0].Host != 3 {
			t.Fatalf("%s = %v, want ErrAgentsCoordinatorFree naming host 3", name, err)
		}
	}
	if _, err := os.Stat(layout.FlagDaysUnder(root).Dir()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the refusing coordinator wrote a journal: %v", err)
	}
}
