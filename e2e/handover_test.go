package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee/sim"
)

// How a crash case brings the host down.
type crashKind int

const (
	// faultPoint: a one-shot crash fault point in the agent's environment
	// (and so in the nodes it starts) fires.
	faultPoint crashKind = iota
	// killAtPhase: the test kills the agent with SIGKILL as soon as its
	// journal reaches a phase.
	killAtPhase
)

// TestHandoverCrashRecovery crashes the agent, the old node or the new
// node at every step of a key handover on a one-node devnet: after
// restart every case ends in a completed upgrade or a rollback, the node
// serves the outcome's version and reads what the old version wrote, its
// keys are sealed for the running MRENCLAVE and unseal after a kill -9,
// blocks are still signed by the same identity key, a payment commits, and
// exactly one node runs. -short runs a representative subset.
func TestHandoverCrashRecovery(t *testing.T) {
	cases := []struct {
		name  string
		kind  crashKind
		point string         // faultPoint: the crash point
		phase agentapi.Phase // killAtPhase: when to kill the agent
		// nodeFault: the point is in a node, so the node must be
		// (re)started by the agent with the fault in its environment.
		nodeFault bool
		// crashesAgent: the upgrade request fails because the agent dies.
		crashesAgent bool
		want         []agentapi.Phase
		short        bool
	}{
		{name: "agent.after-stage", point: "agent.after-stage", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}},
		{name: "agent.after-snapshot", point: "agent.after-snapshot", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}},
		{name: "agent.after-hold-keys", point: "agent.after-hold-keys", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}, short: true},
		{name: "agent.after-stop-old", point: "agent.after-stop-old", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}},
		{name: "agent.after-start-new", point: "agent.after-start-new", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}, short: true},
		{name: "agent.after-deliver", point: "agent.after-deliver", crashesAgent: true, want: []agentapi.Phase{agentapi.PhaseCompleted}},
		{name: "old node: node.before-export", point: "node.before-export", nodeFault: true,
			want: []agentapi.Phase{agentapi.PhaseCompleted, agentapi.PhaseRolledBack}, short: true},
		{name: "new node: node.after-import-seal", point: "node.after-import-seal", nodeFault: true,
			want: []agentapi.Phase{agentapi.PhaseCompleted}, short: true},
		{name: "kill -9 agent at keys-held", kind: killAtPhase, phase: agentapi.PhaseKeysHeld, want: []agentapi.Phase{agentapi.PhaseCompleted}},
		{name: "kill -9 agent at old-stopped", kind: killAtPhase, phase: agentapi.PhaseOldStopped, want: []agentapi.Phase{agentapi.PhaseCompleted}, short: true},
		{name: "kill -9 agent at new-started", kind: killAtPhase, phase: agentapi.PhaseNewStarted, want: []agentapi.Phase{agentapi.PhaseCompleted}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if testing.Short() && !tc.short {
				t.Skip("-short runs a representative subset")
			}
			hn := startHandoverNet(t)
			ctx := testCtx(t, 5*time.Minute)
			from := hn.status(ctx).Installed
			before := hn.pay(ctx, from.NodeMREnclave, 10)

			onceDir := t.TempDir()
			if tc.kind == faultPoint {
				// The agent (and every node it starts) gets the fault;
				// one-shot markers keep restarted processes from firing
				// it again.
				hn.stopAgent(ctx)
				t.Setenv(fault.EnvVar, "crash:"+tc.point)
				t.Setenv(fault.OnceDirEnvVar, onceDir)
				if tc.nodeFault {
					if err := devnet.StopProcess(ctx, hn.host, devnet.NodeBin, 10*time.Second); err != nil {
						t.Fatal(err)
					}
				}
				hn.startAgent(ctx)
				hn.waitNodeServing(ctx, from.NodeMREnclave)
			}

			rel := hn.publish(ctx, hn.bins.releases[versionNext])
			var upgradeErr error
			switch {
			case tc.point == "agent.after-stage":
				// The agent stages the approved release by itself and
				// dies right after; restarted, it has it staged and
				// upgrades.
				hn.waitAgentGone(30 * time.Second)
				hn.startAgent(ctx)
				hn.waitStaged(ctx, rel.Version)
				hn.mustTeeup(ctx, "upgrade", "local", "--version", rel.Version, "--devnet", hn.net.Dir)
			case tc.kind == faultPoint:
				hn.waitStaged(ctx, rel.Version)
				_, errOut, err := hn.teeup(ctx, "upgrade", "local", "--version", rel.Version, "--devnet", hn.net.Dir)
				upgradeErr = err
				t.Logf("upgrade local: %v %s", err, strings.TrimSpace(errOut))
				if tc.crashesAgent {
					if err == nil {
						t.Fatal("upgrade local succeeded although the agent was to crash")
					}
					hn.waitAgentGone(30 * time.Second)
					hn.startAgent(ctx)
				}
			case tc.kind == killAtPhase:
				hn.waitStaged(ctx, rel.Version)
				killedAt := hn.killAgentAt(ctx, rel.Version, tc.phase)
				t.Logf("agent killed with the journal at phase %s", killedAt)
				hn.startAgent(ctx)
			}
			if tc.kind == faultPoint {
				marker := filepath.Join(onceDir, "crash:"+tc.point)
				if _, err := os.Stat(marker); err != nil {
					t.Fatalf("the fault %s never fired (upgrade error %v): the case proves nothing", tc.point, upgradeErr)
				}
			}

			rec := hn.waitOutcome(ctx, "")
			t.Logf("outcome %s after %d attempts (last error %q)", rec.Phase, rec.Attempts, rec.Error)
			if !slices.Contains(tc.want, rec.Phase) {
				t.Fatalf("upgrade ended %s (error %q), want one of %v", rec.Phase, rec.Error, tc.want)
			}
			if rec.To.Version != rel.Version || rec.From.Version != from.Version {
				t.Fatalf("upgrade %s -> %s, want %s -> %s", rec.From.Version, rec.To.Version, from.Version, rel.Version)
			}
			hn.checkOutcome(ctx, rec, before)
		})
	}
}

// killAgentAt starts 'teeup upgrade local' to version, kills the agent with
// SIGKILL as soon as the journal reaches phase, waits for the CLI to fail,
// and returns the phase the journal holds after the kill.
func (hn *handoverNet) killAgentAt(ctx context.Context, version string, phase agentapi.Phase) agentapi.Phase {
	hn.t.Helper()
	pid, ok := hn.agentPID()
	if !ok {
		hn.t.Fatal("the agent does not run")
	}
	type result struct {
		errOut string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		_, errOut, err := hn.teeup(ctx, "upgrade", "local", "--version", version, "--devnet", hn.net.Dir)
		done <- result{errOut, err}
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		j, err := hn.journal()
		if err == nil && j.Upgrade != nil && j.Upgrade.To.Version == version && j.Upgrade.Phase == phase {
			break
		}
		select {
		case r := <-done:
			hn.t.Fatalf("the upgrade ended before reaching phase %s: %v %s", phase, r.err, r.errOut)
		default:
		}
		if time.Now().After(deadline) {
			hn.t.Fatalf("the journal did not reach phase %s in 60s", phase)
		}
		time.Sleep(200 * time.Microsecond)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		hn.t.Fatal(err)
	}
	r := <-done
	if r.err == nil {
		hn.t.Fatal("upgrade local succeeded although the agent was killed")
	}
	hn.waitAgentGone(30 * time.Second)
	j, err := hn.journal()
	if err != nil {
		hn.t.Fatalf("journal after the kill: %v", err)
	}
	if j.Upgrade.Phase != phase {
		hn.t.Fatalf("the agent was killed at phase %s but the journal says %s: the kill came too late to test this step", phase, j.Upgrade.Phase)
	}
	return j.Upgrade.Phase
}

// signedCopy copies the binary src to dst and signs it with key as a
// production enclave of the devnet's product and SVN.
func signedCopy(t *testing.T, src, dst string, key ed25519.PrivateKey) *sim.SigStruct {
	t.Helper()
	if err := copyExecutable(src, dst); err != nil {
		t.Fatal(err)
	}
	ss, err := sim.SignBinary(dst, devnet.EnclaveProduct, devnet.EnclaveSVN, key)
	if err != nil {
		t.Fatal(err)
	}
	return ss
}

// TestHandoverAttacks attacks one host's key handover on a one-node
// devnet. Each attack is refused with a clear error and the node keeps
// serving: a staged binary changed after staging; releases whose binary
// or signatures do not verify (refused on chain and by the agent); an
// agent enclave that no release signs; requesters other than the
// network-signed agent asking the running node for its keys; an Answer
// replayed to the node; and, during a real upgrade, enclaves other than
// the release's node asking the agent for the keys.
func TestHandoverAttacks(t *testing.T) {
	hn := startHandoverNet(t)
	ctx := testCtx(t, 8*time.Minute)
	from := hn.status(ctx).Installed
	hn.pay(ctx, from.NodeMREnclave, 10)
	rel := hn.publish(ctx, hn.bins.releases[versionNext])
	hn.waitStaged(ctx, rel.Version)
	nodePID, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !ok {
		t.Fatal("no node process")
	}
	nodeLog := filepath.Join(hn.host.LogDir, "node.log")
	signer := hn.key("signer")
	_, outsider, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	// Enclave binaries the attacks use: an impostor node and a rogue agent,
	// both validly signed by the network's enclave signer.
	impostor := filepath.Join(hn.net.Dir, "impostor", devnet.NodeBin)
	impostorSS := signedCopy(t, bins.impostor, impostor, signer)
	rogueAgent := filepath.Join(hn.net.Dir, "rogue", devnet.AgentBin)
	rogueSS := signedCopy(t, hn.bins.rogueAgent, rogueAgent, signer)
	if impostorSS.UniqueID == rel.NodeMREnclave || rogueSS.UniqueID == hn.net.Release.AgentMREnclave {
		t.Fatal("the impostor node or the rogue agent measures like the genuine one: the attacks would prove nothing")
	}
	initial, err := release.Load(hn.net.Release.ReleaseFile())
	if err != nil {
		t.Fatal(err)
	}
	next, err := release.Load(rel.ReleaseFile())
	if err != nil {
		t.Fatal(err)
	}

	t.Run("staged binary changed after staging", func(t *testing.T) {
		hn := hn.with(t)
		staged := layout.Agent(hn.host.AgentDir).Release(rel.Version).NodeBinary()
		origBin, err := os.ReadFile(staged)
		if err != nil {
			t.Fatal(err)
		}
		origSig, err := os.ReadFile(staged + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		// A signature structure for the genuine binary by a signer
		// outside the network.
		outsiderBin := filepath.Join(t.TempDir(), devnet.NodeBin)
		signedCopy(t, staged, outsiderBin, outsider)
		outsiderSig, err := os.ReadFile(outsiderBin + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		impostorBin, err := os.ReadFile(impostor)
		if err != nil {
			t.Fatal(err)
		}
		impostorSig, err := os.ReadFile(impostor + ".sig")
		if err != nil {
			t.Fatal(err)
		}
		write := func(path string, b []byte) error { return os.WriteFile(path, b, 0o755) }
		tests := []struct {
			name   string
			tamper func() error
			want   []string
		}{
			{"binary modified", func() error {
				return write(staged, append(slices.Clone(origBin), 0))
			}, []string{"refusing to run", "no longer verifies", "SHA-256"}},
			{"binary and signature structure replaced by another signed build", func() error {
				return errors.Join(write(staged, impostorBin), write(staged+".sig", impostorSig))
			}, []string{"refusing to run", "no longer verifies", "SHA-256"}},
			{"signature structure by a signer outside the network", func() error {
				return write(staged+".sig", outsiderSig)
			}, []string{"refusing to run", "MRSIGNER"}},
			{"signature structure removed", func() error {
				return os.Remove(staged + ".sig")
			}, []string{"refusing to run", "verify binary"}},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hn := hn.with(t)
				defer func() {
					if err := errors.Join(write(staged, origBin), write(staged+".sig", origSig)); err != nil {
						t.Fatalf("restore the staged release: %v", err)
					}
				}()
				if err := tt.tamper(); err != nil {
					t.Fatal(err)
				}
				hn.refusedTeeup(ctx, tt.want, "upgrade", "local", "--version", rel.Version, "--devnet", hn.net.Dir)
				hn.checkUnharmed(ctx, from, nodePID, "")
			})
		}
		if n := countOccurrences(nodeLog, `"version":"`+impostorVersion+`"`); n != 0 {
			t.Fatalf("the impostor node binary ran %d times", n)
		}
	})

	t.Run("release does not verify", func(t *testing.T) {
		hn := hn.with(t)
		const version = "0.3.0"
		// signed returns next's manifest as version, edited, signed by keys.
		signed := func(edit func(*release.Manifest), keys ...ed25519.PrivateKey) *release.SignedRelease {
			m := next.Manifest
			m.Version = version
			if edit != nil {
				edit(&m)
			}
			sr, err := release.New(m)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range keys {
				if err := release.Sign(sr, k); err != nil {
					t.Fatal(err)
				}
			}
			return sr
		}
		kmg1, kmg2, kmg3 := hn.key("kmg-1"), hn.key("kmg-2"), hn.key("kmg-3")
		_, outsider2, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			name    string
			release func() *release.SignedRelease
			stage   []string // the agent's refusal
			propose []string // the chain's refusal; nil: not proposed (the chain does not fetch binaries)
		}{
			{"binary at the URL is not the manifest's", func() *release.SignedRelease {
				return signed(func(m *release.Manifest) { m.Node.URL = "file://" + impostor }, kmg1, kmg2)
			}, []string{"downloaded binary rejected", "SHA-256"}, nil},
			{"nothing at the URL", func() *release.SignedRelease {
				return signed(func(m *release.Manifest) {
					m.Node.URL = "file://" + filepath.Join(hn.net.Dir, "missing", devnet.NodeBin)
				}, kmg1, kmg2)
			}, []string{"download node binary"}, nil},
			{"one of two required signatures", func() *release.SignedRelease {
				return signed(nil, kmg1)
			}, []string{"1 of 2 required signatures"}, []string{"key management group threshold not met"}},
			{"a signature by a key outside the group", func() *release.SignedRelease {
				return signed(nil, kmg1, outsider)
			}, []string{"not a member of the group"}, []string{"signature outside the key management group"}},
			{"only keys outside the group", func() *release.SignedRelease {
				return signed(nil, outsider, outsider2)
			}, []string{"not a member of the group"}, []string{"signature outside the key management group"}},
			{"a member's signature over other bytes", func() *release.SignedRelease {
				sr := signed(nil, kmg1, kmg3)
				sr.Signatures[1].Key = fmt.Sprintf("%x", kmg2.Public().(ed25519.PublicKey))
				sr.Signatures[1].Sig = fmt.Sprintf("%x", ed25519.Sign(kmg2, []byte("another release")))
				return sr
			}, []string{"signature does not verify"}, []string{"release does not verify"}},
			{"node enclave ID below the threshold", func() *release.SignedRelease {
				sr := signed(nil, kmg1, kmg2)
				sr.NodeID.Signatures = sr.NodeID.Signatures[:1]
				return sr
			}, []string{"node enclave id", "1 of 2 required signatures"}, []string{"key management group threshold not met"}},
		}
		releases := make([]*release.SignedRelease, len(tests))
		for i := range tests {
			releases[i] = tests[i].release()
		}
		for i, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hn := hn.with(t)
				raw, err := releases[i].Marshal()
				if err != nil {
					t.Fatal(err)
				}
				file := filepath.Join(t.TempDir(), "release.json")
				if err := os.WriteFile(file, raw, 0o644); err != nil {
					t.Fatal(err)
				}
				if tt.propose != nil {
					hn.refusedTeeup(ctx, tt.propose, "release", "propose", file, "--key", "nog-1", "--devnet", hn.net.Dir)
					g, err := hn.admin.Releases(ctx)
					if err != nil {
						t.Fatal(err)
					}
					if _, ok := g.Release(version); ok {
						t.Fatalf("release %s is on chain after its proposal was refused", version)
					}
				}
				hn.refusedTeeup(ctx, tt.stage, "upgrade", "stage", file, "--devnet", hn.net.Dir)
				ents, err := os.ReadDir(layout.Agent(hn.host.AgentDir).Releases())
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range ents {
					if e.Name() != rel.Version {
						t.Fatalf("the agent's staging directory holds %s after a refused stage", e.Name())
					}
				}
				hn.checkUnharmed(ctx, from, nodePID, "")
			})
		}
	})

	t.Run("agent enclave no release signs refuses to start", func(t *testing.T) {
		hn := hn.with(t)
		journal := layout.Agent(hn.host.AgentDir).Journal()
		before, err := os.ReadFile(journal)
		if err != nil {
			t.Fatal(err)
		}
		hn.stopAgent(ctx)
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		out, err := exec.CommandContext(rctx, rogueAgent, "run", "--config", hn.host.AgentConfig).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || rctx.Err() != nil {
			t.Fatalf("the rogue agent did not refuse to start (%v):\n%s", err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		t.Logf("the rogue agent: %s", lines[len(lines)-1])
		for _, want := range []string{"not the network-signed agent", rogueSS.UniqueID.Short()} {
			if !strings.Contains(string(out), want) {
				t.Fatalf("the rogue agent's refusal does not say %q:\n%s", want, out)
			}
		}
		after, err := os.ReadFile(journal)
		if err != nil {
			t.Fatal(err)
		}
		if string(after) != string(before) {
			t.Fatal("the rogue agent changed the journal")
		}
		hn.startAgent(ctx)
		hn.checkUnharmed(ctx, from, nodePID, "")
	})

	platform, err := sim.OpenPlatform(hn.host.PlatformDir)
	if err != nil {
		t.Fatal(err)
	}
	genuineAgent := hn.onPlatform(filepath.Join(hn.net.Release.Dir, devnet.AgentBin))
	if genuineAgent.Identity().UniqueID != initial.AgentID.MREnclave {
		t.Fatalf("the devnet's agent binary measures %s, its release says %s", genuineAgent.Identity().UniqueID.Short(), initial.AgentID.MREnclave.Short())
	}

	t.Run("node refuses requesters other than the network-signed agent", func(t *testing.T) {
		hn := hn.with(t)
		ca, err := sim.OpenCA(filepath.Join(hn.net.Dir, "ca"))
		if err != nil {
			t.Fatal(err)
		}
		otherHost, err := sim.InitPlatform(filepath.Join(t.TempDir(), "platform"), ca)
		if err != nil {
			t.Fatal(err)
		}
		agentElsewhere, err := otherHost.Load(filepath.Join(hn.net.Release.Dir, devnet.AgentBin), sim.LoadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		debugID := genuineAgent.Identity()
		debugID.Debug = true
		tests := []struct {
			name      string
			requester func(hn *handoverNet) *handover.Requester
			want      string
		}{
			{"another enclave presenting the agent's enclave ID", func(hn *handoverNet) *handover.Requester {
				return hn.requester(impersonator{hn.onPlatform(rogueAgent), genuineAgent.Identity()}, release.RoleAgent, initial.AgentID)
			}, "requester enclave id"},
			{"the new release's node", func(hn *handoverNet) *handover.Requester {
				return hn.requester(hn.onPlatform(filepath.Join(rel.Dir, devnet.NodeBin)), release.RoleNode, next.NodeID)
			}, handover.ErrWrongRole.Error()},
			{"the agent on another platform", func(hn *handoverNet) *handover.Requester {
				return hn.requester(agentElsewhere, release.RoleAgent, initial.AgentID)
			}, "MAC does not verify"},
			{"a debug enclave of the agent", func(hn *handoverNet) *handover.Requester {
				return hn.requester(platform.NewEnclave(debugID), release.RoleAgent, initial.AgentID)
			}, handover.ErrDebugEnclave.Error()},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				hn := hn.with(t)
				refusals := countOccurrences(nodeLog, `"msg":"key handover refused"`)
				secret, err := fetchFrom(ctx, layout.Node(hn.host.DataDir).HandoverSocket(), tt.requester(hn))
				var re *handover.RefusalError
				if !errors.As(err, &re) || re.By != "provider" || !strings.Contains(re.Reason, tt.want) {
					t.Fatalf("fetch from the node: %v, want the node's refusal saying %q", err, tt.want)
				}
				t.Logf("refused: %s", re.Reason)
				if secret != nil {
					t.Fatal("a refused requester got a secret")
				}
				eventually(t, 10*time.Second, "the node logs the refusal", func() (bool, string) {
					n := countOccurrences(nodeLog, `"msg":"key handover refused"`)
					return n > refusals, fmt.Sprintf("%d refusals logged, %d before", n, refusals)
				})
				hn.checkUnharmed(ctx, from, nodePID, "")
			})
		}
	})

	t.Run("replayed answer", func(t *testing.T) {
		hn := hn.with(t)
		sock := layout.Node(hn.host.DataDir).HandoverSocket()
		var d net.Dialer
		c, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		rc := &recordingConn{Conn: c}
		secret, err := handover.Fetch(ctx, rc, hn.requester(genuineAgent, release.RoleAgent, initial.AgentID))
		c.Close()
		if err != nil {
			t.Fatalf("the genuine exchange failed: %v", err)
		}
		keys, err := node.DecodeKeys(secret)
		if err != nil || keys.NodeID != hn.host.ID || keys.ChainID != hn.net.ChainID {
			t.Fatalf("the genuine exchange delivered %+v (%v), want node %d's keys", keys, err, hn.host.ID)
		}
		sent, err := frames(rc.written.Bytes())
		if err != nil || len(sent) != 2 || sent[0].typ != frameRequest || sent[1].typ != frameAnswer {
			t.Fatalf("recorded %d frames (%v), want a request and an answer", len(sent), err)
		}
		var captured handover.Answer
		if err := captured.UnmarshalBinary(sent[1].payload()); err != nil {
			t.Fatal(err)
		}

		c2, err := d.DialContext(ctx, "unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer c2.Close()
		if err := c2.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Write(sent[0].raw); err != nil {
			t.Fatal(err)
		}
		typ, payload, err := readRawFrame(c2)
		if err != nil || typ != frameChallenge {
			t.Fatalf("read the challenge: type %d, %v", typ, err)
		}
		var ch handover.Challenge
		if err := ch.UnmarshalBinary(payload); err != nil {
			t.Fatal(err)
		}
		if ch.Nonce == captured.Nonce {
			t.Fatal("the node issued the same nonce twice")
		}
		if _, err := c2.Write(sent[1].raw); err != nil {
			t.Fatal(err)
		}
		typ, payload, err = readRawFrame(c2)
		if err != nil || typ != frameRefusal {
			t.Fatalf("the node answered a replayed answer with type %d (%v), want a refusal", typ, err)
		}
		var ref handover.Refusal
		if err := ref.UnmarshalBinary(payload); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(ref.Reason, handover.ErrUnknownNonce.Error()) {
			t.Fatalf("refusal %q, want %q", ref.Reason, handover.ErrUnknownNonce)
		}
		hn.checkUnharmed(ctx, from, nodePID, "")
	})

	t.Run("agent hands the keys to the release's node only", func(t *testing.T) {
		hn := hn.with(t)
		before := hn.pay(ctx, from.NodeMREnclave, 10)
		oldNode := hn.onPlatform(filepath.Join(hn.net.Release.Dir, devnet.NodeBin))
		tests := []struct {
			name      string
			requester func() *handover.Requester
			want      string
		}{
			{"a network-signed node of another MRENCLAVE", func() *handover.Requester {
				return hn.requester(hn.onPlatform(impostor), release.RoleNode, hn.signedEnclaveID(release.RoleNode, impostorSS.UniqueID, "kmg-1", "kmg-2"))
			}, handover.ErrWrongEnclave.Error()},
			{"the old release's node", func() *handover.Requester {
				return hn.requester(oldNode, release.RoleNode, initial.NodeID)
			}, handover.ErrWrongEnclave.Error()},
			{"an agent", func() *handover.Requester {
				return hn.requester(genuineAgent, release.RoleAgent, initial.AgentID)
			}, handover.ErrWrongRole.Error()},
		}
		// Each requester keeps dialing the agent's handover socket, which
		// serves only while the agent hands the keys to the new node.
		type result struct {
			secret []byte
			err    error
		}
		results := make([]chan result, len(tests))
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		sock := layout.Agent(hn.host.AgentDir).HandoverSocket()
		for i, tt := range tests {
			results[i] = make(chan result, 1)
			r := tt.requester()
			go func() {
				var d net.Dialer
				for {
					c, err := d.DialContext(rctx, "unix", sock)
					if err != nil {
						if rctx.Err() != nil {
							results[i] <- result{err: fmt.Errorf("the agent never served keys: %w", err)}
							return
						}
						time.Sleep(time.Millisecond)
						continue
					}
					secret, err := handover.Fetch(rctx, c, r)
					c.Close()
					results[i] <- result{secret, err}
					return
				}
			}()
		}
		hn.mustTeeup(ctx, "upgrade", "local", "--version", rel.Version, "--devnet", hn.net.Dir)
		for i, tt := range tests {
			r := <-results[i]
			var re *handover.RefusalError
			if !errors.As(r.err, &re) || re.By != "provider" || !strings.Contains(re.Reason, tt.want) {
				t.Errorf("%s: %v, want the agent's refusal saying %q", tt.name, r.err, tt.want)
			}
			if r.secret != nil {
				t.Errorf("%s got the keys", tt.name)
			}
			if re != nil {
				t.Logf("%s: refused: %s", tt.name, re.Reason)
			}
		}
		rec := hn.waitOutcome(ctx, "")
		if rec.Phase != agentapi.PhaseCompleted {
			t.Fatalf("upgrade ended %s: %s", rec.Phase, rec.Error)
		}
		hn.checkOutcome(ctx, rec, before)
	})
}

// TestHandoverDowngradeNeedsApprovedRollback upgrades 0.1.0-dev to 0.2.0
// and finalizes: going "up" to the older approved 0.1.5 is refused as a
// downgrade, still with one Node Operators Group vote for the rollback,
// and allowed once the quorum has approved it on chain.
func TestHandoverDowngradeNeedsApprovedRollback(t *testing.T) {
	hn := startHandoverNet(t)
	ctx := testCtx(t, 5*time.Minute)
	from := hn.status(ctx).Installed
	patch := hn.publish(ctx, hn.bins.releases[versionPatch])
	next := hn.publish(ctx, hn.bins.releases[versionNext])
	hn.waitStaged(ctx, patch.Version)
	hn.waitStaged(ctx, next.Version)
	before := hn.pay(ctx, from.NodeMREnclave, 10)

	hn.mustTeeup(ctx, "upgrade", "local", "--version", next.Version, "--devnet", hn.net.Dir)
	up := hn.waitOutcome(ctx, "")
	if up.Phase != agentapi.PhaseCompleted || up.To.Version != next.Version {
		t.Fatalf("upgrade to %s ended %s (%s)", up.To.Version, up.Phase, up.Error)
	}
	hn.checkOutcome(ctx, up, before)
	hn.mustTeeup(ctx, "upgrade", "finalize", "--devnet", hn.net.Dir)
	if _, err := os.Stat(layout.Node(hn.host.DataDir).SealedKeys(from.NodeMREnclave)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("finalize left the old version's sealed keys (%v)", err)
	}
	installed := hn.status(ctx).Installed
	nodePID, _ := devnet.ProcessAlive(hn.host, devnet.NodeBin)

	downgrade := []string{"upgrade", "local", "--version", patch.Version, "--devnet", hn.net.Dir}
	refused := []string{"refusing a downgrade", patch.Version, next.Version}
	hn.refusedTeeup(ctx, refused, downgrade...)
	hn.checkUnharmed(ctx, installed, nodePID, up.ID)

	rollback := func(key string) {
		hn.mustTeeup(ctx, "release", "approve-rollback", "--from", next.Version, "--to", patch.Version, "--key", key, "--devnet", hn.net.Dir)
	}
	rollback("nog-1")
	hn.refusedTeeup(ctx, refused, downgrade...) // one vote is not the quorum
	hn.checkUnharmed(ctx, installed, nodePID, up.ID)
	rollback("nog-2")

	before = hn.pay(ctx, installed.NodeMREnclave, 10)
	hn.mustTeeup(ctx, downgrade...)
	down := hn.waitOutcome(ctx, "")
	if down.Phase != agentapi.PhaseCompleted || down.From.Version != next.Version || down.To.Version != patch.Version {
		t.Fatalf("approved rollback %s -> %s ended %s (%s)", down.From.Version, down.To.Version, down.Phase, down.Error)
	}
	hn.checkOutcome(ctx, down, before)
}

// benchHandoverJSON is the part of 'teeup bench handover --json' the test
// checks.
type benchHandoverJSON struct {
	From     agentapi.Installation `json:"from"`
	To       agentapi.Installation `json:"to"`
	Exchange struct {
		Iterations  int `json:"iterations"`
		SecretBytes int `json:"secret_bytes"`
		Steps       []struct {
			Step string        `json:"step"`
			Mean time.Duration `json:"mean_ns"`
			P50  time.Duration `json:"p50_ns"`
			P99  time.Duration `json:"p99_ns"`
			Min  time.Duration `json:"min_ns"`
			Max  time.Duration `json:"max_ns"`
		} `json:"steps"`
	} `json:"exchange"`
	Swaps []struct {
		UpgradeID   string                `json:"upgrade_id"`
		Swap        time.Duration         `json:"swap_ns"`
		ObservedGap time.Duration         `json:"observed_gap_ns"`
		Upgrade     time.Duration         `json:"upgrade_ns"`
		Steps       []agentapi.StepTiming `json:"steps"`
	} `json:"swaps"`
	Final string `json:"final"`
}

// TestBenchHandover runs 'teeup bench handover' on a one-node devnet with
// an approved 0.2.0: it refuses bad flags and hosts, times the exchange
// (whose total is the sum of its steps) and two whole upgrades (rolled back
// in between; each swap spans its journalled steps), leaves the host
// upgraded with what was written before, and then refuses to run over the
// completed upgrade.
func TestBenchHandover(t *testing.T) {
	ctx := testCtx(t, 5*time.Minute)
	bench := func(args ...string) []string { return append([]string{"bench", "handover"}, args...) }
	// An unregistered command would answer with the help of 'teeup
	// bench', which has no --iterations.
	if help, _, _ := runTeeup(ctx, bench("--help")...); !strings.Contains(help, "--iterations") {
		t.Fatal("'teeup bench handover' is not registered in the CLI (cli.newBenchHandoverCmd)")
	}
	t.Setenv("TEEUP_DEVNET", "")
	hn := startHandoverNet(t)
	from := hn.status(ctx).Installed
	rel := hn.publish(ctx, hn.bins.releases[versionNext])
	hn.waitStaged(ctx, rel.Version)

	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no devnet", nil, "--devnet DIR is required"},
		{"no iterations", []string{"--devnet", hn.net.Dir, "--iterations", "0"}, "--iterations 0: want at least 1"},
		{"negative runs", []string{"--devnet", hn.net.Dir, "--runs", "-1"}, "--runs -1: want 0 or more"},
		{"restore without runs", []string{"--devnet", hn.net.Dir, "--runs", "0", "--restore"}, "--restore needs at least one --runs"},
		{"malformed version", []string{"--devnet", hn.net.Dir, "--version", "two"}, "--version"},
		{"unknown host", []string{"--devnet", hn.net.Dir, "--node-id", "2"}, "has no node 2"},
		{"release not staged", []string{"--devnet", hn.net.Dir, "--version", "9.9.9"}, "release 9.9.9 is not staged"},
		{"installed version", []string{"--devnet", hn.net.Dir, "--version", from.Version}, "already runs " + from.Version},
		{"not a devnet", []string{"--devnet", t.TempDir()}, "is not a devnet"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			hn.with(t).refusedTeeup(ctx, []string{"bench handover", tt.want}, bench(tt.args...)...)
		})
	}
	hn.checkUnharmed(ctx, from, mustNodePID(t, hn), "")
	before := hn.pay(ctx, from.NodeMREnclave, 10)

	out := hn.mustTeeup(ctx, bench("--devnet", hn.net.Dir, "--iterations", "20", "--runs", "2", "--json")...)
	var r benchHandoverJSON
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	if r.From.Version != from.Version || r.To.Version != rel.Version || r.Final != rel.Version {
		t.Fatalf("bench %s -> %s ending at %s, want %s -> %s ending at %s", r.From.Version, r.To.Version, r.Final, from.Version, rel.Version, rel.Version)
	}
	if r.Exchange.Iterations != 20 || r.Exchange.SecretBytes == 0 || len(r.Exchange.Steps) != 5 {
		t.Fatalf("exchange report %+v", r.Exchange)
	}
	var sum time.Duration
	for i, s := range r.Exchange.Steps {
		if s.Min <= 0 || s.Min > s.P50 || s.P50 > s.P99 || s.P99 > s.Max || s.Mean < s.Min || s.Mean > s.Max {
			t.Errorf("step %q: inconsistent statistics %+v", s.Step, s)
		}
		if i < len(r.Exchange.Steps)-1 {
			sum += s.Mean
		}
	}
	if total := r.Exchange.Steps[4]; total.Step != "total" || total.Mean-sum > 5 || sum-total.Mean > 5 {
		t.Errorf("total %+v is not the sum of the steps' means (%s)", total, sum)
	}
	if len(r.Swaps) != 2 || r.Swaps[0].UpgradeID == r.Swaps[1].UpgradeID {
		t.Fatalf("%d swaps (%+v), want 2 distinct upgrades", len(r.Swaps), r.Swaps)
	}
	for _, s := range r.Swaps {
		var inSwap time.Duration
		phases := map[agentapi.Phase]bool{}
		for _, st := range s.Steps {
			phases[st.Phase] = true
			switch st.Phase {
			case agentapi.PhaseOldStopped, agentapi.PhaseNewStarted, agentapi.PhaseNewServing:
				inSwap += st.Duration
			}
		}
		var steps []string
		for _, st := range s.Steps {
			steps = append(steps, fmt.Sprintf("%s %s", st.Phase, st.Duration.Round(time.Millisecond)))
		}
		t.Logf("swap %s: %s (%s)", s.UpgradeID, s.Swap.Round(time.Millisecond), strings.Join(steps, ", "))
		if len(phases) != 7 || s.Swap < inSwap || s.Swap > s.Upgrade || s.ObservedGap <= 0 || s.ObservedGap > s.Upgrade {
			t.Errorf("swap %s: %s (steps in it %s), observed gap %s, upgrade %s, phases %v", s.UpgradeID, s.Swap, inSwap, s.ObservedGap, s.Upgrade, phases)
		}
	}
	t.Logf("exchange total p50 %s; swaps %s and %s", r.Exchange.Steps[4].P50, r.Swaps[0].Swap, r.Swaps[1].Swap)

	rec := hn.waitOutcome(ctx, r.Swaps[1].UpgradeID)
	if rec.Phase != agentapi.PhaseCompleted {
		t.Fatalf("the last benchmarked upgrade is %s", rec.Phase)
	}
	hn.checkOutcome(ctx, rec, before)
	hn.refusedTeeup(ctx, []string{"is at phase completed: finalize or roll it back first"}, bench("--devnet", hn.net.Dir)...)
}

// mustNodePID returns the pid of the host's node.
func mustNodePID(t *testing.T, hn *handoverNet) int {
	t.Helper()
	pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !ok {
		t.Fatal("no node process")
	}
	return pid
}
