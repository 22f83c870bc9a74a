package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/teeup/teeup/agent/selfupgrade"
	"github.com/teeup/teeup/handover"
	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
)

// SuccessorOptions configures a new agent in handover mode (teeup-agent
// successor), started by the old agent during a self-upgrade.
type SuccessorOptions struct {
	// Genesis, Platform and Dir are the old agent's genesis, platform and
	// agent directory.
	Genesis, Platform, Dir string
	// Socket is where the old agent serves its held state.
	Socket string
	// Release is the signed release whose agent this binary must be.
	Release string
	// From is the old agent's MRENCLAVE (hex): the only provider accepted.
	From string
	// ID names the self-upgrade (and the state file).
	ID string
	// Debug runs as a debug enclave (development).
	Debug bool
	// Stderr receives the simulation warning and messages.
	Stderr io.Writer
}

// RunSuccessor is the new agent's handover mode: it proves itself to the
// old agent — answering its challenge with a local report and this
// release's network-signed agent enclave ID — accepts the held state only
// from the old agent's exact measurement (also network-signed), seals it
// to its own MRENCLAVE in the agent directory (layout.Agent.SuccessorState)
// and returns. It touches nothing else: no journal, no node.
func RunSuccessor(ctx context.Context, o SuccessorOptions) error {
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if !layout.ValidID(o.ID) {
		return fmt.Errorf("successor: --id %q is not a plain name", o.ID)
	}
	from, err := tee.ParseMeasurement(o.From)
	if err != nil {
		return fmt.Errorf("successor: --from: %w", err)
	}
	netw, err := release.LoadNetwork(o.Genesis)
	if err != nil {
		return fmt.Errorf("successor: genesis: %w", err)
	}
	plat, err := boot.Open(boot.Options{Program: "teeup-agent (handover mode)", PlatformDir: o.Platform, Debug: o.Debug, Warnings: o.Stderr})
	if err != nil {
		return err
	}
	self := plat.Enclave.Identity()
	sr, err := release.Load(o.Release)
	if err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	if err := sr.Verify(netw.KMG); err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	if sr.Manifest.NetworkID != netw.ChainID {
		return fmt.Errorf("successor: release %s is for network %q, this is %q", sr.Manifest.Version, sr.Manifest.NetworkID, netw.ChainID)
	}
	if sr.AgentID.MREnclave != self.UniqueID {
		return fmt.Errorf("successor: this agent measures %s, release %s's agent is %s", self.UniqueID.Short(), sr.Manifest.Version, sr.AgentID.MREnclave.Short())
	}
	r, err := handover.NewRequester(handover.RequesterConfig{
		Enclave: plat.Enclave, ChainID: netw.ChainID, KMG: netw.KMG,
		Role: release.RoleAgent, ID: sr.AgentID,
		AcceptProvider: handover.SuccessorPeer(from, self.Debug).AcceptProvider,
	})
	if err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	var dl net.Dialer
	c, err := dl.DialContext(ctx, "unix", o.Socket)
	if err != nil {
		return fmt.Errorf("successor: old agent's socket: %w", err)
	}
	secret, err := handover.Fetch(ctx, c, r)
	c.Close()
	if err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	var st selfupgrade.State
	if err := st.UnmarshalBinary(secret); err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	blob, err := tee.Seal(plat.Enclave, tee.SealUnique, secret, successorAD(o.ID))
	if err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	dir := layout.Agent(o.Dir)
	if err := os.MkdirAll(dir.SuccessorDir(), 0o700); err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	if err := fsutil.WriteFileAtomic(dir.SuccessorState(o.ID), blob, 0o600); err != nil {
		return fmt.Errorf("successor: %w", err)
	}
	fmt.Fprintf(o.Stderr, "teeup-agent %s: received %d held-state entries from agent %s and sealed them to itself\n", self.UniqueID.Short(), len(st.Entries), from.Short())
	return nil
}
