package devnet

import (
	"context"
	"errors"
	"fmt"
	"github.com/teeup/teeup/layout"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/teeup/teeup/internal/netns"
	"github.com/teeup/teeup/internal/proc"
)

// stopGrace is how long a stopped program may take to exit before it is
// killed.
const stopGrace = 10 * time.Second

// pidFile is where a host's program's pid is recorded: by the agent in its
// directory when agents supervise the host, by devnet otherwise.
func pidFile(h *Host, prog string) string {
	if h.AgentManaged && prog != AgentBin {
		if prog == NodeBin {
			return layout.Agent(h.AgentDir).NodePID()
		}
		return layout.Agent(h.AgentDir).DistributePID()
	}
	return filepath.Join(h.Dir, prog+".pid")
}

// StartHost starts a host's processes: the agent (which starts the node)
// or the node itself, and the distribution process. On an isolated devnet
// they start inside the host's network namespace, which must exist
// (ConnectHost).
func StartHost(n *Network, h *Host, distribute bool) error {
	if n.Agents {
		return StartAgent(n, h) // the agent starts the node and distribution
	}
	if err := StartNode(n, h); err != nil {
		return err
	}
	if distribute {
		return StartDistribute(n, h)
	}
	return nil
}

// StartNode starts the host's node from the current release.
func StartNode(n *Network, h *Host) error {
	pid, err := startProgram(n, h, NodeBin, []string{"run", "--config", h.NodeConfig}, "node.log")
	if err != nil || pid == 0 {
		return err
	}
	return fmt.Errorf("node %d already runs (pid %d)", h.ID, pid)
}

// StartAgent starts the host's upgrade agent, which supervises its node.
func StartAgent(n *Network, h *Host) error {
	pid, err := startProgram(n, h, AgentBin, []string{"run", "--config", h.AgentConfig}, "agent.log")
	if err != nil || pid == 0 {
		return err
	}
	return fmt.Errorf("agent %d already runs (pid %d)", h.ID, pid)
}

// StartDistribute starts the host's distribution process; one that
// already runs is left as it is.
func StartDistribute(n *Network, h *Host) error {
	_, err := startProgram(n, h, DistributeBin, distributeArgs(h), "distribute.log")
	return err
}

// startProgram starts prog of the current release on h with args, logging
// to log in the host's log directory. When prog already runs there it
// starts nothing and returns its pid.
//
// On an isolated devnet prog starts inside the host's network namespace
// (and what it starts, for an agent its node and distribution, inherits
// it).
func startProgram(n *Network, h *Host, prog string, args []string, log string) (running int, err error) {
	bin := n.programPath(h, prog)
	if pid, ok := proc.ReadPID(pidFile(h, prog), bin); ok {
		return pid, nil
	}
	start := func() error {
		_, err := proc.StartDetached(bin, args, nil, filepath.Join(h.LogDir, log), pidFile(h, prog))
		return err
	}
	if h.Namespace == "" {
		return 0, start()
	}
	ns := netns.Namespace{Name: h.Namespace}
	if !ns.Exists() {
		return 0, fmt.Errorf("start %s on host %d: its network namespace %s does not exist (connect the host first: devnet.ConnectHost, or 'teeup devnet host start %d')", prog, h.ID, h.Namespace, h.ID)
	}
	return 0, ns.Do(start)
}

// StopProcess stops a host's program (teeup-node, teeup-agent or
// teeup-distribute) gracefully, then forcibly after grace.
func StopProcess(ctx context.Context, h *Host, prog string, grace time.Duration) error {
	return proc.StopFromFile(ctx, pidFile(h, prog), prog, grace)
}

// DetachAgent stops a host's agent with SIGUSR2, which leaves its node
// and distribution running (a restarted agent adopts them); SIGKILL after
// grace.
func DetachAgent(ctx context.Context, h *Host, grace time.Duration) error {
	return proc.StopFromFileWith(ctx, pidFile(h, AgentBin), AgentBin, syscall.SIGUSR2, grace)
}

// ProcessAlive reports whether a host's program runs, and its pid.
func ProcessAlive(h *Host, prog string) (int, bool) {
	return proc.ReadPID(pidFile(h, prog), prog)
}

// StopHost stops every process of host h: the agent first (a running
// agent would restart what is stopped), then distribution and the node.
// Programs that do not run are skipped.
func StopHost(ctx context.Context, h *Host) error {
	var errs []error
	for _, prog := range []string{AgentBin, DistributeBin, NodeBin} {
		if err := StopProcess(ctx, h, prog, stopGrace); err != nil {
			errs = append(errs, fmt.Errorf("stop %s of host %d: %w", prog, h.ID, err))
		}
	}
	return errors.Join(errs...)
}

// HostRunning returns the programs of host h that run, with their pids.
func HostRunning(h *Host) map[string]int {
	out := map[string]int{}
	for _, prog := range []string{AgentBin, DistributeBin, NodeBin} {
		if pid, ok := ProcessAlive(h, prog); ok {
			out[prog] = pid
		}
	}
	return out
}

// Wiped is what WipeHost deleted and what it kept.
type Wiped struct {
	// Host is the wiped host's id.
	Host uint64 `json:"host"`
	// DataDir is the node data directory that was emptied.
	DataDir string `json:"data_dir"`
	// Deleted lists what the data directory held, top level first.
	Deleted []WipedEntry `json:"deleted"`
	// Kept lists the host's paths that were left as they were.
	Kept []string `json:"kept"`
}

// WipedEntry is one deleted entry of a node data directory.
type WipedEntry struct {
	// Path is the entry's path.
	Path string `json:"path"`
	// What says what it was (ledger, sealed keys, socket, ...).
	What string `json:"what"`
	// Bytes is its size (a directory's: every file under it).
	Bytes int64 `json:"bytes"`
}

// WipeHost stops host h (agent, distribution, node) and deletes its node
// data directory — the ledger, the node's sealed keys, its sockets and
// ingress state — as a lost disk would, leaving an empty directory in its
// place. The platform (the host's simulated CPU), the agent's directory
// and configuration, the node configuration, distribution output and logs
// are kept.
func WipeHost(ctx context.Context, h *Host) (*Wiped, error) {
	if err := StopHost(ctx, h); err != nil {
		return nil, fmt.Errorf("wipe host %d: %w", h.ID, err)
	}
	if left := HostRunning(h); len(left) > 0 {
		return nil, fmt.Errorf("wipe host %d: still running after stop: %v", h.ID, left)
	}
	w := &Wiped{Host: h.ID, DataDir: h.DataDir}
	entries, err := os.ReadDir(h.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("wipe host %d: %w", h.ID, err)
	}
	for _, e := range entries {
		p := filepath.Join(h.DataDir, e.Name())
		w.Deleted = append(w.Deleted, WipedEntry{Path: p, What: dataEntryKind(layout.Node(h.DataDir), p, e), Bytes: treeSize(p)})
	}
	if err := os.RemoveAll(h.DataDir); err != nil {
		return nil, fmt.Errorf("wipe host %d: %w", h.ID, err)
	}
	if err := os.MkdirAll(h.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("wipe host %d: %w", h.ID, err)
	}
	for _, p := range []string{h.PlatformDir, h.AgentDir, h.AgentConfig, h.NodeConfig, h.DistDir, h.DistState, h.LogDir} {
		if _, err := os.Stat(p); err == nil {
			w.Kept = append(w.Kept, p)
		}
	}
	return w, nil
}

// dataEntryKind names what entry e, at path p in node data directory d,
// holds.
func dataEntryKind(d layout.Node, p string, e fs.DirEntry) string {
	switch {
	case p == d.Ledger():
		return "ledger (blocks, state, raft log)"
	case p == d.Keys():
		return "sealed application keys (node identity, ledger key)"
	case e.Type()&fs.ModeSocket != 0:
		return "socket"
	case p == d.Ingress():
		return "ingress state"
	case e.IsDir():
		return "directory"
	default:
		return "file"
	}
}

// treeSize returns the bytes of every regular file under p.
func treeSize(p string) int64 {
	var total int64
	_ = filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				total += fi.Size()
			}
		}
		return nil
	})
	return total
}
