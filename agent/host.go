package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/snapshot"
	"github.com/teeup/teeup/tee"
)

// realHost performs upgrade steps on this host: processes through the
// supervisors, the node through its admin and handover sockets, keys
// through the agent's enclave.
type realHost struct {
	cfg     Config
	dir     layout.Agent
	nodeAt  nodeFiles
	log     *slog.Logger
	faults  Faults
	enclave tee.Enclave
	network *release.Network
	node    *supervisor
	dist    *supervisor
	agentID func() (*release.EnclaveID, error)

	serveTimeout time.Duration

	mu      sync.Mutex
	serving map[string]net.Listener // upgrade id → handover listener

	// hashMu serialises hashing the ledger ahead (Prehash) and a snapshot:
	// a snapshot taken while a pass runs waits for its sums instead of
	// hashing the same files alongside it. hashes is the snapshot root's
	// hash cache, loaded on first use and shared by both.
	hashMu sync.Mutex
	hashes *snapshot.HashCache
}

// hashCache returns the shared hash cache (hashMu held).
func (h *realHost) hashCache() *snapshot.HashCache {
	if h.hashes == nil {
		h.hashes = snapshot.OpenHashCache(h.dir.Snapshots())
	}
	return h.hashes
}

var _ Host = (*realHost)(nil)

func (h *realHost) admin() *nodeapi.AdminClient {
	return nodeapi.NewAdminClient(h.nodeAt.adminSocket)
}

// nodeSpec is how the agent runs a node installation. The node always gets
// the agent's handover socket and its release manifest: a node that has
// keys sealed for its MRENCLAVE simply ignores them. Every start of it —
// first start, upgrade, restart after an exit, rollback — verifies the
// binary against its signed release first (verifyInstallation).
func (h *realHost) nodeSpec(inst Installation) *procSpec {
	return &procSpec{
		Binary: inst.NodeBinary,
		Args:   []string{"run", "--config", h.cfg.NodeConfig, "--import-keys-from", h.dir.HandoverSocket(), "--enclave-id", inst.ReleaseFile},
		Log:    h.cfg.NodeLog,
		Verify: func() error { return h.verifyInstallation(inst) },
		Inputs: []string{inst.NodeBinary, layout.SigStruct(inst.NodeBinary), inst.ReleaseFile},
		Image: func() (string, error) {
			sr, err := h.verifiedRelease(inst)
			if err != nil {
				return "", err
			}
			return sr.Manifest.Node.SHA256, nil
		},
	}
}

// distSpec is how the agent runs distribution for installation inst:
// inst's release's teeup-distribute when it ships one — verified against
// the signed release before every start — and the configured binary
// otherwise.
func (h *realHost) distSpec(inst Installation) *procSpec {
	if h.cfg.Distribute == nil {
		return nil
	}
	spec := &procSpec{Binary: h.cfg.Distribute.Binary, Args: h.cfg.Distribute.Args, Log: h.cfg.Distribute.Log}
	if inst.DistributeBinary != "" {
		spec.Binary = inst.DistributeBinary
		spec.Verify = func() error { return h.verifyDistribute(inst) }
		spec.Inputs = []string{inst.DistributeBinary, inst.ReleaseFile}
		spec.Image = func() (string, error) {
			sr, err := h.verifiedRelease(inst)
			if err != nil {
				return "", err
			}
			if sr.Manifest.Distribute == nil {
				return "", fmt.Errorf("release %s ships no teeup-distribute: %w", inst.Version, ErrBinaryRejected)
			}
			return sr.Manifest.Distribute.SHA256, nil
		}
	}
	return spec
}

// verifyDistribute checks that inst's distribution binary is its signed
// release's (Key Management Group threshold, network, SHA-256).
func (h *realHost) verifyDistribute(inst Installation) error {
	sr, err := h.verifiedRelease(inst)
	if err != nil {
		return err
	}
	if sr.Manifest.Distribute == nil {
		return fmt.Errorf("release %s ships no teeup-distribute, yet %s is installed as its: %w", inst.Version, inst.DistributeBinary, ErrBinaryRejected)
	}
	if err := release.VerifyArtifact(inst.DistributeBinary, *sr.Manifest.Distribute); err != nil {
		return fmt.Errorf("refusing to run %s: %w: %w", inst.DistributeBinary, ErrBinaryRejected, err)
	}
	return nil
}

// StopDistribution implements Host.
func (h *realHost) StopDistribution(ctx context.Context) error {
	if h.dist == nil {
		return nil
	}
	return h.dist.stop(ctx)
}

// StartDistribution implements Host.
func (h *realHost) StartDistribution(ctx context.Context, inst Installation) error {
	spec := h.distSpec(inst)
	if h.dist == nil || spec == nil {
		return nil
	}
	return h.dist.start(ctx, spec)
}

// Snapshot implements Host: a Pebble checkpoint written by the running old
// node (hard links; consistent), the distribution state file, and a
// manifest of every file's SHA-256. An existing snapshot that verifies is
// reused.
func (h *realHost) Snapshot(ctx context.Context, name string, from Installation) error {
	dir := h.dir.Snapshot(name)
	if _, err := snapshot.Verify(ctx, dir); err == nil {
		return nil
	} else if _, statErr := os.Stat(dir); statErr == nil {
		return fmt.Errorf("snapshot %s exists but does not verify: %w", name, err)
	}
	if err := os.MkdirAll(h.dir.Snapshots(), 0o700); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	a := h.admin()
	defer a.Close()
	st, err := a.Status(ctx)
	if err != nil {
		return fmt.Errorf("snapshot: node status: %w", err)
	}
	if st.MREnclave != from.NodeMREnclave {
		return fmt.Errorf("snapshot: the running node is %s, expected the old version %s", st.MREnclave.Short(), from.NodeMREnclave.Short())
	}
	h.hashMu.Lock()
	defer h.hashMu.Unlock()
	_, err = snapshot.Create(ctx, snapshot.CreateOptions{
		Root: h.dir.Snapshots(), Name: name, HashCache: h.hashCache(),
		Checkpoint:        func(dst string) error { return a.Checkpoint(ctx, dst) },
		StateFile:         h.cfg.DistributeState,
		AllowMissingState: true,
		Labels: map[string]string{
			"chain_id": st.ChainID, "node_id": fmt.Sprint(st.NodeID), "height": fmt.Sprint(st.Height), "head_hash": st.HeadHash,
			"schema": fmt.Sprint(st.SchemaVersion), "mrenclave": st.MREnclave.String(), "version": from.Version,
		},
	})
	if err != nil {
		return err
	}
	h.faults.CrashPoint("agent.after-snapshot")
	return nil
}

// Prehash hashes the live ledger's sstables into the snapshot root's hash
// cache (snapshot.HashCache.Prehash): sstables never change, so the next
// snapshot reuses their sums instead of reading them. A snapshot waits for
// a pass that runs.
func (h *realHost) Prehash(ctx context.Context) (files int, bytes int64, err error) {
	if err := os.MkdirAll(h.dir.Snapshots(), 0o700); err != nil {
		return 0, 0, fmt.Errorf("prehash: %w", err)
	}
	h.hashMu.Lock()
	defer h.hashMu.Unlock()
	return h.hashCache().Prehash(ctx, h.nodeAt.data.Ledger())
}

// sealAD is the additional data of the keys held for upgrade id.
func (h *realHost) sealAD(id string) []byte { return heldKeysAD(id) }

// heldKeysAD is the additional data the keys held for upgrade id are
// sealed under (by this agent, or by its successor after a self-upgrade).
func heldKeysAD(id string) []byte { return []byte("teeup agent held keys v1|" + id) }

// heldKeys unseals the keys the agent holds for upgrade id.
func (h *realHost) heldKeys(id string) ([]byte, error) {
	blob, err := os.ReadFile(h.dir.HeldKeys(id))
	if err != nil {
		return nil, err
	}
	return tee.Unseal(h.enclave, blob, h.sealAD(id))
}

// HoldKeys implements Host: the first leg of the seed's handover. The
// agent requests the keys from the old node, answers its challenge with a
// local report and its network-signed enclave ID, checks that the keys
// came from the old node it supervises, and seals them to itself.
func (h *realHost) HoldKeys(ctx context.Context, id string, from Installation) error {
	if _, err := h.heldKeys(id); err == nil {
		return nil
	}
	agentID, err := h.agentID()
	if err != nil {
		return err
	}
	r, err := handover.NewRequester(handover.RequesterConfig{
		Enclave: h.enclave, ChainID: h.network.ChainID, KMG: h.network.KMG,
		Role: release.RoleAgent, ID: *agentID,
		// Only from the node it supervises.
		AcceptProvider: handover.NodePeer(from.NodeMREnclave, h.cfg.AllowDebugNodes).AcceptProvider,
	})
	if err != nil {
		return fmt.Errorf("hold keys: %w", err)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", h.nodeAt.handoverSocket)
	if err != nil {
		return fmt.Errorf("hold keys: old node handover socket: %w", err)
	}
	secret, err := handover.Fetch(ctx, c, r)
	c.Close()
	if err != nil {
		return fmt.Errorf("hold keys: %w", err)
	}
	blob, err := tee.Seal(h.enclave, tee.SealUnique, secret, h.sealAD(id))
	if err != nil {
		return fmt.Errorf("hold keys: %w", err)
	}
	if err := os.MkdirAll(h.dir.HeldKeysDir(), 0o700); err != nil {
		return fmt.Errorf("hold keys: %w", err)
	}
	if err := fsutil.WriteFileAtomic(h.dir.HeldKeys(id), blob, 0o600); err != nil {
		return fmt.Errorf("hold keys: %w", err)
	}
	h.faults.CrashPoint("agent.after-hold-keys")
	h.log.Info("keys received from the old node and sealed by the agent", "upgrade", id)
	return nil
}

// StopNode implements Host.
func (h *realHost) StopNode(ctx context.Context) error {
	if err := h.node.stop(ctx); err != nil {
		return err
	}
	h.faults.CrashPoint("agent.after-stop-old")
	return nil
}

// StartNode implements Host. When the agent holds keys for upgrade id it
// serves them to exactly inst's measurement; the supervisor re-verifies the
// binary against its signed release before it starts it (a binary changed
// on disk never runs).
func (h *realHost) StartNode(ctx context.Context, inst Installation, id string) error {
	if id != "" {
		if err := h.serveKeys(ctx, id, inst); err != nil {
			return err
		}
	}
	if err := h.node.start(ctx, h.nodeSpec(inst)); err != nil {
		return err
	}
	h.faults.CrashPoint("agent.after-start-new")
	return nil
}

// Why verifyInstallation refuses an installation, to be matched with
// errors.Is.
var (
	// ErrReleaseRejected: the installation's release manifest does not
	// verify (Key Management Group threshold on the manifest and both
	// enclave IDs, or another network's).
	ErrReleaseRejected = errors.New("its signed release does not verify")
	// ErrBinaryRejected: the binary is not the one the release describes
	// (SHA-256, MRENCLAVE, signature structure, signer, product, SVN) or
	// not the one the journal installed.
	ErrBinaryRejected = errors.New("the binary is not its signed release's")
)

// verifyInstallation checks that inst's binary still matches its release:
// the release verifies under the Key Management Group (manifest and the
// node's and agent's signed enclave IDs) for this network, and the binary's
// SHA-256, MRENCLAVE and signature structure are the release's and the
// journal's.
func (h *realHost) verifyInstallation(inst Installation) error {
	sr, err := h.verifiedRelease(inst)
	if err != nil {
		return err
	}
	id, err := release.VerifyBinary(inst.NodeBinary, sr.Manifest.Node)
	if err != nil {
		return fmt.Errorf("refusing to run %s: %w: %w", inst.NodeBinary, ErrBinaryRejected, err)
	}
	if id.UniqueID != inst.NodeMREnclave {
		return fmt.Errorf("refusing to run %s: it measures %s, the journal expects %s: %w", inst.NodeBinary, id.UniqueID.Short(), inst.NodeMREnclave.Short(), ErrBinaryRejected)
	}
	return nil
}

// verifiedRelease loads inst's release manifest and checks it under the
// Key Management Group for this network.
func (h *realHost) verifiedRelease(inst Installation) (*release.SignedRelease, error) {
	sr, err := release.Load(inst.ReleaseFile)
	if err != nil {
		return nil, fmt.Errorf("release %s: %w: %w", inst.Version, ErrReleaseRejected, err)
	}
	if err := sr.Verify(h.network.KMG); err != nil {
		return nil, fmt.Errorf("release %s: %w: %w", inst.Version, ErrReleaseRejected, err)
	}
	if sr.Manifest.NetworkID != h.network.ChainID {
		return nil, fmt.Errorf("release %s is for network %q, this is %q: %w", inst.Version, sr.Manifest.NetworkID, h.network.ChainID, ErrReleaseRejected)
	}
	return sr, nil
}

// serveKeys hands the keys held for upgrade id, over the second leg of the
// handover, to a node whose MRENCLAVE is inst's and whose enclave ID the
// Key Management Group signed. It runs until stopServing.
func (h *realHost) serveKeys(ctx context.Context, id string, inst Installation) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.serving[id]; ok {
		return nil
	}
	secret, err := h.heldKeys(id)
	if errors.Is(err, os.ErrNotExist) {
		return nil // nothing held (a rollback to the old version, which has its own keys)
	}
	if err != nil {
		return fmt.Errorf("serve keys: %w", err)
	}
	agentID, err := h.agentID()
	if err != nil {
		return err
	}
	p, err := handover.NewProvider(handover.ProviderConfig{
		Enclave: h.enclave, ChainID: h.network.ChainID, KMG: h.network.KMG,
		Role: release.RoleAgent, ID: agentID, Secret: secret,
		// Only to the release's signed node enclave.
		AcceptRequester: handover.NodePeer(inst.NodeMREnclave, h.cfg.AllowDebugNodes).AcceptRequester,
	})
	if err != nil {
		return fmt.Errorf("serve keys: %w", err)
	}
	_ = os.Remove(h.dir.HandoverSocket())
	ln, err := net.Listen("unix", h.dir.HandoverSocket())
	if err != nil {
		return fmt.Errorf("serve keys: %w", err)
	}
	if err := os.Chmod(h.dir.HandoverSocket(), 0o600); err != nil {
		ln.Close()
		return fmt.Errorf("serve keys: %w", err)
	}
	if h.serving == nil {
		h.serving = map[string]net.Listener{}
	}
	h.serving[id] = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if err := handover.Serve(ctx, c, p); err != nil {
					h.log.Warn("key handover to the new node refused", "upgrade", id, "err", err)
					return
				}
				h.log.Info("keys handed to the new node", "upgrade", id, "mrenclave", inst.NodeMREnclave.Short())
				h.faults.CrashPoint("agent.after-deliver")
			}()
		}
	}()
	return nil
}

func (h *realHost) stopServing(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if ln, ok := h.serving[id]; ok {
		ln.Close()
		delete(h.serving, id)
	}
}

// maxServeCrashes is how many restarts after an early exit AwaitServing
// tolerates before it gives up on the new node: one crash (a fault, a
// port still held) is retried; a node that exits again and again will not
// serve.
const maxServeCrashes = 3

// servePoll is how often AwaitServing asks the new node for its status: a
// local unix-socket request, cheap enough to ask often, since every poll
// interval the node is ready but unasked adds to the upgrade's downtime.
const servePoll = 25 * time.Millisecond

// AwaitServing implements Host.
func (h *realHost) AwaitServing(ctx context.Context, inst Installation) error {
	timeout := h.serveTimeout
	if timeout == 0 {
		timeout = 90 * time.Second
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	a := h.admin()
	defer a.Close()
	sealed := h.nodeAt.data.SealedKeys(inst.NodeMREnclave)
	var last string
	// why describes the last poll for an error; the node log is read
	// only then, not on every poll.
	why := func(down bool) string {
		if !down {
			return last
		}
		return last + "; node process not running (see " + h.cfg.NodeLog + ": " + tailLine(h.cfg.NodeLog) + ")"
	}
	for {
		st, err := a.Status(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case st.MREnclave != inst.NodeMREnclave:
			last = fmt.Sprintf("node runs %s", st.MREnclave.Short())
		case st.Phase != nodeapi.PhaseRunning:
			last = "node " + st.Phase
		default:
			if _, err := os.Stat(sealed); err != nil {
				last = "keys not sealed yet"
			} else {
				return nil
			}
		}
		_, _, running := h.node.running()
		down := !running && h.node.want() != nil
		// A node that keeps exiting right after start (a failed
		// migration, a refused key, a bad config) will not serve: fail
		// now rather than after the whole serve timeout.
		if n := h.node.crashesInARow(); down && n >= maxServeCrashes {
			return fmt.Errorf("node %s not serving: its process exited %d times in a row after %s: %s", inst.Version, n+1, time.Since(start).Round(time.Millisecond), why(down))
		}
		select {
		case <-ctx.Done():
			ended := "timed out"
			if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
				ended = "cancelled"
			}
			return fmt.Errorf("node %s not serving after %s (%s; serve timeout %s): %s", inst.Version, time.Since(start).Round(time.Millisecond), ended, timeout, why(down))
		case <-time.After(servePoll):
		}
	}
}

// tailLine returns the last non-empty line of a log file, for errors.
func tailLine(path string) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "no log"
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	l := lines[len(lines)-1]
	if len(l) > 300 {
		l = l[:300]
	}
	return l
}

// RestoreSnapshot implements Host.
func (h *realHost) RestoreSnapshot(ctx context.Context, name string) error {
	if _, _, ok := h.node.running(); ok {
		return errors.New("restore: the node is still running")
	}
	_, err := snapshot.Restore(ctx, snapshot.RestoreOptions{
		Snapshot:  h.dir.Snapshot(name),
		LedgerDir: h.nodeAt.data.Ledger(),
		StateFile: h.cfg.DistributeState,
	})
	return err
}

// Finalize implements Host.
func (h *realHost) Finalize(ctx context.Context, from Installation, id string) error {
	h.stopServing(id)
	for _, p := range []string{h.nodeAt.data.SealedKeys(from.NodeMREnclave), h.dir.HeldKeys(id)} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// CommittedSince implements Host: it compares the snapshot's height with
// the running node's and counts the transactions in between.
func (h *realHost) CommittedSince(ctx context.Context, name string) (Loss, error) {
	m, err := snapshot.Open(h.dir.Snapshot(name))
	if err != nil {
		return Loss{}, err
	}
	var snapHeight uint64
	if _, err := fmt.Sscan(m.Labels["height"], &snapHeight); err != nil {
		return Loss{}, fmt.Errorf("snapshot %s has no height label", name)
	}
	a := h.admin()
	defer a.Close()
	st, err := a.Status(ctx)
	if err != nil {
		return Loss{}, err
	}
	loss := Loss{FromHeight: snapHeight + 1, ToHeight: st.Height}
	for ht := snapHeight + 1; ht <= st.Height; ht++ {
		b, err := a.Block(ctx, ht)
		if err != nil {
			return loss, err
		}
		loss.Transactions += int(b.TxCount)
	}
	return loss, nil
}
