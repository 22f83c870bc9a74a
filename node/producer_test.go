package node

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/teeup/teeup/consensus"
)

// fakeLeadership records the leadership transfers a producer asks for.
type fakeLeadership struct {
	mu        sync.Mutex
	leader    bool
	target    uint64 // 0: no voter to hand leadership to
	transfers []string
}

func (f *fakeLeadership) IsLeader() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeLeadership) TransferLeadership(_ context.Context, reason string, _ ...uint64) (uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.transfers = append(f.transfers, reason)
	if f.target == 0 {
		return 0, consensus.ErrNoTransferTarget
	}
	return f.target, nil
}

func (f *fakeLeadership) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.transfers)
}

// logRecord is one JSON log line.
type logRecord struct {
	Level  string `json:"level"`
	Msg    string `json:"msg"`
	Reason string `json:"reason"`
}

func logRecords(t *testing.T, buf *bytes.Buffer) []logRecord {
	t.Helper()
	var out []logRecord
	for line := range strings.SplitSeq(strings.TrimSpace(buf.String()), "\n") {
		if line == "" {
			continue
		}
		var r logRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func testProducer(nodeID uint64) (*producer, *fakeLeadership, *bytes.Buffer) {
	var buf bytes.Buffer
	n := &Node{cfg: Config{NodeID: nodeID}, log: slog.New(slog.NewJSONHandler(&buf, nil))}
	lead := &fakeLeadership{leader: true, target: 2}
	return &producer{n: n, started: time.Now(), lead: lead}, lead, &buf
}

// TestLeaderStepsDownAfterFailedBlocks drives the producer's leadership
// decision through its inputs: the outcome of the blocks applied (this
// node's rejected or accepted, another's) and blocks it cannot build.
func TestLeaderStepsDownAfterFailedBlocks(t *testing.T) {
	const self = 1
	rejected := func(p *producer) { p.applied(context.Background(), self, false, 7, "bad state root") }
	accepted := func(p *producer) { p.applied(context.Background(), self, true, 7, "") }
	othersRejected := func(p *producer) { p.applied(context.Background(), 2, false, 7, "bad state root") }
	buildFails := func(p *producer) { p.failed(context.Background(), "cannot build a block: injected") }
	for _, tc := range []struct {
		name      string
		notLeader bool
		steps     []func(*producer)
		transfers int
		left      int32 // failures counted afterwards
	}{
		{"below the threshold", false, []func(*producer){rejected, rejected}, 0, 2},
		{"rejected blocks", false, []func(*producer){rejected, rejected, rejected}, 1, 0},
		{"blocks that cannot be built", false, []func(*producer){buildFails, buildFails, buildFails}, 1, 0},
		{"rejections and build failures together", false, []func(*producer){rejected, buildFails, rejected}, 1, 0},
		{"an accepted block resets the count", false, []func(*producer){rejected, rejected, accepted, rejected, rejected}, 0, 2},
		{"another proposer's rejection is not counted", false, []func(*producer){rejected, rejected, othersRejected}, 0, 2},
		{"the count starts over after a step-down", false, []func(*producer){rejected, rejected, rejected, rejected, rejected}, 1, 2},
		{"a follower does not transfer", true, []func(*producer){rejected, rejected, rejected}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, lead, logs := testProducer(self)
			lead.leader = !tc.notLeader
			for _, step := range tc.steps {
				step(p)
			}
			if got := lead.count(); got != tc.transfers {
				t.Fatalf("%d leadership transfers, want %d (%q)", got, tc.transfers, lead.transfers)
			}
			if got := p.failures.Load(); got != tc.left {
				t.Fatalf("%d failures counted, want %d", got, tc.left)
			}
			var stepDowns []logRecord
			for _, r := range logRecords(t, logs) {
				if r.Msg == "leader stepping down" {
					stepDowns = append(stepDowns, r)
				}
			}
			if len(stepDowns) != tc.transfers {
				t.Fatalf("%d step-down logs, want %d", len(stepDowns), tc.transfers)
			}
			for _, r := range stepDowns {
				if r.Level != slog.LevelError.String() {
					t.Errorf("step-down logged at %s, want ERROR", r.Level)
				}
				if !strings.HasPrefix(r.Reason, "3 blocks in a row failed, the last: ") {
					t.Errorf("step-down reason %q", r.Reason)
				}
			}
			if tc.transfers > 0 && lead.transfers[0] != stepDowns[0].Reason {
				t.Errorf("transfer reason %q, logged %q", lead.transfers[0], stepDowns[0].Reason)
			}
		})
	}
}

// TestLeaderStepDownIsRateLimited: a leader transfers at most once per
// transferInterval, and one that finds no voter to hand leadership to logs
// that at error level.
func TestLeaderStepDownIsRateLimited(t *testing.T) {
	p, lead, logs := testProducer(1)
	lead.target = 0
	p.stepDown(context.Background(), "this node is not current: starting")
	p.stepDown(context.Background(), "this node is not current: starting")
	if got := lead.count(); got != 1 {
		t.Fatalf("%d transfers within %s, want 1", got, transferInterval)
	}
	var cannot int
	for _, r := range logRecords(t, logs) {
		if r.Msg == "leader cannot step down" && r.Level == slog.LevelError.String() {
			cannot++
		}
	}
	if cannot != 1 {
		t.Fatalf("%d 'leader cannot step down' errors, want 1", cannot)
	}
	p.mu.Lock()
	p.lastTransfer = time.Now().Add(-transferInterval)
	p.mu.Unlock()
	p.stepDown(context.Background(), "again")
	if got := lead.count(); got != 2 {
		t.Fatalf("%d transfers after %s, want 2", got, transferInterval)
	}
}
