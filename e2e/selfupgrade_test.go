package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/selfupgrade"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/internal/fault"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/remoteadmin"
	"github.com/teeup/teeup/tee"
)

// agentMetrics reads the agent's Prometheus metrics from its socket.
func (hn *handoverNet) agentMetrics(ctx context.Context) string {
	hn.t.Helper()
	c := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", hn.host.AgentSocket)
	}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://agent/metrics", nil)
	if err != nil {
		hn.t.Fatal(err)
	}
	req.Header.Set(remoteadmin.HeaderNodeID, fmt.Sprint(hn.host.ID))
	resp, err := c.Do(req)
	if err != nil {
		hn.t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return string(raw)
}

// publishAgentRelease stages release version with TestMain's node and
// distribution and another agent build (the rogue agent's binary, signed
// into this release), and has it approved on chain and staged.
func (hn *handoverNet) publishAgentRelease(ctx context.Context, version string) *devnet.Release {
	hn.t.Helper()
	dir := hn.t.TempDir()
	for src, dst := range map[string]string{
		filepath.Join(bins.dir, devnet.NodeBin):       devnet.NodeBin,
		filepath.Join(bins.dir, devnet.DistributeBin): devnet.DistributeBin,
		hn.bins.rogueAgent:                            devnet.AgentBin,
	} {
		if err := copyExecutable(src, filepath.Join(dir, dst)); err != nil {
			hn.t.Fatal(err)
		}
	}
	rel, err := devnet.StageDirRelease(hn.net, dir, version)
	if err != nil {
		hn.t.Fatal(err)
	}
	hn.mustTeeup(ctx, "release", "propose", rel.ReleaseFile(), "--key", "nog-1", "--devnet", hn.net.Dir)
	hn.mustTeeup(ctx, "release", "approve", rel.Version, "--key", "nog-2", "--devnet", hn.net.Dir)
	hn.waitStaged(ctx, rel.Version)
	return rel
}

// waitAgentMoved waits until the running agent is not oldAgent and its
// self-upgrade is completed.
func (hn *handoverNet) waitAgentMoved(ctx context.Context, oldAgent tee.Measurement) {
	hn.t.Helper()
	eventually(hn.t, 90*time.Second, "the agent moves to the release's agent", func() (bool, string) {
		st, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.AgentUpgrade == nil {
			return false, "no self-upgrade journalled; " + tail(filepath.Join(hn.host.LogDir, "agent.log"), 2)
		}
		return st.MREnclave != oldAgent && st.AgentUpgrade.Phase == selfupgrade.PhaseCompleted,
			fmt.Sprintf("agent %s, self-upgrade %s %s", st.MREnclave.Short(), st.AgentUpgrade.Phase, st.AgentUpgrade.Error)
	})
}

// TestAgentSelfUpgradeCrash crashes the agent (kill -9) at each
// self-upgrade crash point — after the effect, before its journal write —
// and restarts it from the old binary, as an init system would: it ends
// with the new agent running and the node never touched.
func TestAgentSelfUpgradeCrash(t *testing.T) {
	for _, point := range []string{"agent.after-stage-agent", "agent.after-successor-handover", "agent.after-install-state"} {
		t.Run(point, func(t *testing.T) {
			if testing.Short() && point != "agent.after-install-state" {
				t.Skip("-short runs a representative subset")
			}
			hn := startHandoverNet(t)
			ctx := testCtx(t, 5*time.Minute)
			st := hn.status(ctx)
			oldAgent := st.MREnclave
			nodePID, _ := devnet.ProcessAlive(hn.host, devnet.NodeBin)
			hn.stopAgent(ctx) // SIGUSR2: the node runs on
			t.Setenv(fault.EnvVar, "crash:"+point)
			t.Setenv(fault.OnceDirEnvVar, t.TempDir())
			hn.startAgent(ctx)
			rel := hn.publishAgentRelease(ctx, "0.1.1")
			if _, err := hn.agent.Rollout(ctx, rel.Version); err != nil {
				t.Fatalf("rollout: %v", err)
			}
			hn.waitAgentGone(60 * time.Second)
			hn.startAgent(ctx) // the old binary again
			hn.waitAgentMoved(ctx, oldAgent)
			if pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin); !ok || pid != nodePID {
				t.Fatalf("node pid %d (alive %t), was %d: the self-upgrade touched the node", pid, ok, nodePID)
			}
			hn.pay(ctx, st.Installed.NodeMREnclave, 1)
		})
	}
}

// TestAgentSelfUpgrade: a release that keeps the node and ships a new
// agent build is rolled out; the agent stages and verifies the new agent,
// hands its state to it through the challenge, and the new agent takes
// over the same process (exec) and adopts the running node: the node
// process is never touched and keeps serving payments.
func TestAgentSelfUpgrade(t *testing.T) {
	hn := startHandoverNet(t)
	ctx := testCtx(t, 5*time.Minute)
	st := hn.status(ctx)
	from, oldAgent := st.Installed, st.MREnclave
	nodePID, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !ok {
		t.Fatal("no node runs")
	}
	agentPID, _ := hn.agentPID()
	hn.pay(ctx, from.NodeMREnclave, 1)

	// State the old agent holds sealed to itself (as keys held through a
	// rolled-back upgrade): it must move to the new agent.
	adir := layout.Agent(hn.host.AgentDir)
	oldEnclave := hn.onPlatform(filepath.Join(hn.net.Release.Dir, devnet.AgentBin))
	if oldEnclave.Identity().UniqueID != oldAgent {
		t.Fatalf("the release's agent measures %s, the running agent %s", oldEnclave.Identity().UniqueID.Short(), oldAgent.Short())
	}
	const heldID = "0.1.0-to-0.1.9-planted"
	heldAD := []byte("teeup agent held keys v1|" + heldID) // agent.heldKeysAD
	secret := []byte("application keys the agent holds")
	blob, err := tee.Seal(oldEnclave, tee.SealUnique, secret, heldAD)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(adir.HeldKeysDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(adir.HeldKeys(heldID), blob, 0o600); err != nil {
		t.Fatal(err)
	}

	rel := hn.publishAgentRelease(ctx, "0.1.1")
	if _, err := hn.agent.Rollout(ctx, rel.Version); err != nil {
		t.Fatalf("rollout: %v", err)
	}

	hn.waitAgentMoved(ctx, oldAgent)
	st = hn.status(ctx)
	if st.AgentUpgrade.From.MREnclave != oldAgent || st.AgentUpgrade.To.MREnclave != st.MREnclave {
		t.Fatalf("self-upgrade record %+v: want from %s to the running %s", st.AgentUpgrade, oldAgent.Short(), st.MREnclave.Short())
	}
	if got, want := st.AgentUpgrade.To.Binary, layout.Agent(hn.host.AgentDir).AgentBinary(rel.Version); got != want {
		t.Fatalf("new agent runs %s, want the staged %s", got, want)
	}
	if pid, ok := hn.agentPID(); !ok || pid != agentPID {
		t.Fatalf("agent pid %d (alive %t), want the same process %d (exec)", pid, ok, agentPID)
	}
	if pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin); !ok || pid != nodePID {
		t.Fatalf("node pid %d (alive %t), was %d: the self-upgrade touched the node", pid, ok, nodePID)
	}
	hn.pay(ctx, from.NodeMREnclave, 1)

	// The held state is now sealed to the new agent, and only to it.
	blob, err = os.ReadFile(adir.HeldKeys(heldID))
	if err != nil {
		t.Fatal(err)
	}
	newEnclave := hn.onPlatform(st.AgentUpgrade.To.Binary)
	if got, err := tee.Unseal(newEnclave, blob, heldAD); err != nil || string(got) != string(secret) {
		t.Fatalf("the new agent unseals the held state: %q, %v; want %q", got, err, secret)
	}
	if _, err := tee.Unseal(oldEnclave, blob, heldAD); err == nil {
		t.Fatal("the old agent can still unseal the held state")
	}
	if _, err := os.Stat(adir.SuccessorState(st.AgentUpgrade.ID)); !os.IsNotExist(err) {
		t.Fatalf("the handed-over state bundle was not removed: %v", err)
	}
	m := hn.agentMetrics(ctx)
	for _, want := range []string{`teeup_agent_self_upgrade_phase_total{phase="completed"} 1`, `teeup_agent_info{mrenclave="` + st.MREnclave.String()} {
		if !strings.Contains(m, want) {
			t.Errorf("agent metrics lack %s:\n%s", want, m)
		}
	}
}

// TestAgentStopModes: SIGUSR2 stops the agent alone and a restarted agent
// adopts the running node; SIGTERM stops the agent with its node.
func TestAgentStopModes(t *testing.T) {
	hn := startAgentNet(t)
	ctx := testCtx(t, 3*time.Minute)
	nodePID, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !ok {
		t.Fatal("no node runs")
	}
	if err := devnet.DetachAgent(ctx, hn.host, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin); !ok || pid != nodePID {
		t.Fatalf("after SIGUSR2 the node is pid %d (alive %t), want %d running", pid, ok, nodePID)
	}
	hn.startAgent(ctx)
	if st := hn.status(ctx); st.NodePID != nodePID {
		t.Fatalf("the restarted agent supervises node pid %d, want the adopted %d", st.NodePID, nodePID)
	}
	// The status may report the pid (from the pid file) a moment before
	// the supervisor has checked the image and logged the adoption.
	eventually(t, 30*time.Second, "the restarted agent logs the adoption", func() (bool, string) {
		return strings.Contains(tail(filepath.Join(hn.host.LogDir, "agent.log"), 200), "adopted a running process"), "no adoption logged"
	})
	if err := devnet.StopProcess(ctx, hn.host, devnet.AgentBin, 40*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin); ok {
		t.Fatal("the node still runs after the agent got SIGTERM")
	}
}
