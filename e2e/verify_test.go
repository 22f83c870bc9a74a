package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
)

// TestSupervisorRefusesTamperedBinary replaces the installed release's
// teeup-node and its signature structure with another validly signed
// binary (the impostor, signed by the network's enclave signer) and kills
// the node: the agent verifies before every start, so its supervisor
// refuses to restart it. The refusal is in the agent status API and in
// 'teeup upgrade status', logged once at error level, and the node stays
// stopped (no crash loop) until the genuine binary is installed again,
// when the supervisor starts it by itself and it serves.
func TestSupervisorRefusesTamperedBinary(t *testing.T) {
	hn := startAgentNet(t)
	ctx := testCtx(t, 4*time.Minute)
	inst := hn.status(ctx).Installed
	hn.pay(ctx, inst.NodeMREnclave, 1)
	pid, ok := devnet.ProcessAlive(hn.host, devnet.NodeBin)
	if !ok {
		t.Fatal("no node process")
	}
	bin, sig := inst.NodeBinary, layout.SigStruct(inst.NodeBinary)
	saved := filepath.Join(t.TempDir(), "genuine")
	for _, f := range [][2]string{{bin, saved}, {sig, saved + layout.SigStructSuffix}} {
		if err := fsutil.CopyFile(f[0], f[1], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	impostor := signedCopy(t, bins.impostor, bin, hn.key("signer"))
	if impostor.UniqueID == inst.NodeMREnclave {
		t.Fatal("the impostor measures like the genuine node")
	}
	agentLog := filepath.Join(hn.host.LogDir, "agent.log")
	logFrom := logSize(agentLog)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}

	var refused *agentapi.StartRefusal
	eventually(t, 30*time.Second, "the agent reports the refused restart", func() (bool, string) {
		st, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		refused = st.NodeRefused
		return refused != nil, fmt.Sprintf("node pid %d, no refusal", st.NodePID)
	})
	if refused.Cause != agentapi.CauseBinaryRejected || refused.Binary != bin || refused.Version != inst.Version {
		t.Fatalf("refusal %+v, want cause %s for %s %s", refused, agentapi.CauseBinaryRejected, inst.Version, bin)
	}
	t.Logf("refused: %s", refused.Error)

	// No restart over many supervisor intervals (500ms each), and a
	// single error in the log.
	for range 20 {
		if p, alive := devnet.ProcessAlive(hn.host, devnet.NodeBin); alive {
			t.Fatalf("the supervisor started the tampered binary (pid %d)", p)
		}
		time.Sleep(200 * time.Millisecond)
	}
	raw, err := os.ReadFile(agentLog)
	if err != nil {
		t.Fatal(err)
	}
	var errorLines int
	for _, line := range strings.Split(string(raw[logFrom:]), "\n") {
		if strings.Contains(line, `"level":"ERROR"`) {
			errorLines++
			if !strings.Contains(line, "refusing to start") {
				t.Errorf("unexpected error in the agent log: %s", line)
			}
		}
		if strings.Contains(line, `"msg":"started"`) || strings.Contains(line, "restarted after an unexpected exit") {
			t.Errorf("the agent started a node: %s", line)
		}
	}
	if errorLines != 1 {
		t.Fatalf("%d error lines in the agent log since the kill, want 1", errorLines)
	}

	out := hn.mustTeeup(ctx, "upgrade", "status", "--devnet", hn.net.Dir)
	if !strings.Contains(out, "NODE NOT STARTED ("+string(agentapi.CauseBinaryRejected)) {
		t.Fatalf("'teeup upgrade status' does not show the refusal:\n%s", out)
	}
	var st agentapi.Status
	if err := json.Unmarshal([]byte(hn.mustTeeup(ctx, "upgrade", "status", "--json", "--devnet", hn.net.Dir)), &st); err != nil {
		t.Fatal(err)
	}
	if st.NodeRefused == nil || st.NodeRefused.Cause != agentapi.CauseBinaryRejected || st.NodePID != 0 {
		t.Fatalf("'teeup upgrade status --json': node pid %d, refusal %+v", st.NodePID, st.NodeRefused)
	}

	// The genuine binary is installed again: the supervisor starts it.
	for _, f := range [][2]string{{saved + layout.SigStructSuffix, sig}, {saved, bin}} {
		if err := fsutil.CopyFile(f[0], f[1], 0o755); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 60*time.Second, "the genuine node runs and serves again", func() (bool, string) {
		st, err := hn.agent.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		if st.NodeRefused != nil || st.NodePID == 0 {
			return false, fmt.Sprintf("node pid %d, refusal %+v", st.NodePID, st.NodeRefused)
		}
		ns, err := hn.admin.Status(ctx)
		if err != nil {
			return false, err.Error()
		}
		return ns.MREnclave == inst.NodeMREnclave, "node runs " + ns.MREnclave.Short()
	})
	hn.waitNodeServing(ctx, inst.NodeMREnclave)
	hn.pay(ctx, inst.NodeMREnclave, 1)
}
