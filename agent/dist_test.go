package agent

import (
	"errors"
	"testing"
)

// TestDistSpecFollowsRelease: distribution runs the installation's release
// binary (verified before every start) when the release ships one, and
// the configured binary otherwise.
func TestDistSpecFollowsRelease(t *testing.T) {
	h := &realHost{cfg: Config{Distribute: &ProcessConfig{Binary: "/opt/teeup-distribute", Args: []string{"run"}, Log: "/var/log/d.log"}}}
	withDist := Installation{Version: "2.0.0", ReleaseFile: "/nonexistent/release.json", DistributeBinary: "/a/releases/2.0.0/teeup-distribute"}
	spec := h.distSpec(withDist)
	if spec.Binary != withDist.DistributeBinary || spec.Verify == nil {
		t.Fatalf("release with distribute: binary %s (verify set %t), want %s verified", spec.Binary, spec.Verify != nil, withDist.DistributeBinary)
	}
	if err := spec.Verify(); !errors.Is(err, ErrReleaseRejected) {
		t.Fatalf("verify without a release file = %v, want ErrReleaseRejected", err)
	}
	spec = h.distSpec(Installation{Version: "1.0.0"})
	if spec.Binary != "/opt/teeup-distribute" || spec.Verify != nil {
		t.Fatalf("release without distribute: binary %s, want the configured one", spec.Binary)
	}
	if (&realHost{}).distSpec(withDist) != nil {
		t.Fatal("no distribution configured, yet a spec")
	}
}
