package agent

import (
	"context"
	"fmt"
	"os"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/release"
)

// stage downloads a signed release's node binary and signature structure
// into the staging directory and verifies everything before anything else
// may use it: the Key Management Group's threshold signatures on the
// manifest and both enclave IDs, the network, the binary's SHA-256 and
// MRENCLAVE, and its signature structure (signer, product, SVN). A staged
// release that still verifies is reused.
func (a *Agent) stage(ctx context.Context, raw []byte) (Installation, error) {
	sr, err := release.Parse(raw)
	if err != nil {
		return Installation{}, fmt.Errorf("stage: %w", err)
	}
	if err := sr.Verify(a.network.KMG); err != nil {
		return Installation{}, fmt.Errorf("stage %s: %w", sr.Manifest.Version, err)
	}
	if sr.Manifest.NetworkID != a.network.ChainID {
		return Installation{}, fmt.Errorf("stage %s: release is for network %q, this is %q", sr.Manifest.Version, sr.Manifest.NetworkID, a.network.ChainID)
	}
	v := sr.Manifest.Version
	a.stageMu.Lock()
	defer a.stageMu.Unlock()
	staged := a.dir.Release(v)
	dir := staged.Dir()
	inst := Installation{
		Version:       v,
		ReleaseFile:   staged.Manifest(),
		NodeBinary:    staged.NodeBinary(),
		NodeMREnclave: sr.Manifest.Node.MREnclave,
	}
	if sr.Manifest.Distribute != nil {
		inst.DistributeBinary = staged.DistributeBinary()
	}
	if _, err := os.Stat(dir); err == nil {
		if err := a.host.verifyInstallation(inst); err != nil {
			return Installation{}, fmt.Errorf("stage %s: already staged but no longer verifies (remove %s to re-download): %w", v, dir, err)
		}
		return inst, nil
	}
	if err := os.MkdirAll(a.dir.Releases(), 0o700); err != nil {
		return Installation{}, fmt.Errorf("stage %s: %w", v, err)
	}
	tmpDir, err := os.MkdirTemp(a.dir.Releases(), "."+v+".partial-")
	if err != nil {
		return Installation{}, fmt.Errorf("stage %s: %w", v, err)
	}
	defer os.RemoveAll(tmpDir)
	tmp := layout.Release(tmpDir)
	f := release.Fetcher{Mode: 0o755}
	bin := tmp.NodeBinary()
	if err := f.Fetch(ctx, sr.Manifest.Node.URL, bin); err != nil {
		return Installation{}, fmt.Errorf("stage %s: download node binary: %w", v, err)
	}
	if err := (release.Fetcher{}).Fetch(ctx, sr.Manifest.Node.SigStructURL(), layout.SigStruct(bin)); err != nil {
		return Installation{}, fmt.Errorf("stage %s: download signature structure: %w", v, err)
	}
	if _, err := release.VerifyBinary(bin, sr.Manifest.Node); err != nil {
		return Installation{}, fmt.Errorf("stage %s: downloaded binary rejected: %w", v, err)
	}
	if d := sr.Manifest.Distribute; d != nil {
		dist := tmp.DistributeBinary()
		if err := f.Fetch(ctx, d.URL, dist); err != nil {
			return Installation{}, fmt.Errorf("stage %s: download teeup-distribute: %w", v, err)
		}
		if err := release.VerifyArtifact(dist, *d); err != nil {
			return Installation{}, fmt.Errorf("stage %s: downloaded teeup-distribute rejected: %w", v, err)
		}
	}
	if err := fsutil.WriteFileAtomic(tmp.Manifest(), raw, 0o644); err != nil {
		return Installation{}, fmt.Errorf("stage %s: %w", v, err)
	}
	if err := os.Rename(tmpDir, dir); err != nil {
		return Installation{}, fmt.Errorf("stage %s: %w", v, err)
	}
	if err := fsutil.SyncDir(a.dir.Releases()); err != nil {
		return Installation{}, err
	}
	a.faults.CrashPoint("agent.after-stage")
	a.log.Info("release staged and verified", "version", v, "mrenclave", inst.NodeMREnclave.Short())
	return inst, nil
}

// staged lists the releases in the staging directory.
func (a *Agent) staged() []string {
	ents, err := os.ReadDir(a.dir.Releases())
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() && e.Name()[0] != '.' {
			out = append(out, e.Name())
		}
	}
	return out
}
