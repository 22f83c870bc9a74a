package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The enclave binaries link only what they execute: their MRENCLAVE changes
// whenever anything they link changes. In a default build neither links a
// fault-injection package, and the agent links neither the node, consensus,
// the ledger, raft nor Pebble. A "faults" build links fault injection into
// both (which shows the check can see it).
func TestEnclaveBinariesLinkOnlyWhatTheyExecute(t *testing.T) {
	const mod = "github.com/teeup/teeup/"
	fault := mod + "internal/fault"
	agentForbidden := []string{fault, mod + "node", mod + "consensus", mod + "ledger", "go.etcd.io/raft", "github.com/cockroachdb/pebble"}
	tests := []struct {
		pkg, tags string
		forbidden []string // packages (and their subpackages) that must not be linked
		required  []string // dependencies that must be there
	}{
		{"../teeup-node", "", []string{fault}, []string{mod + "node", mod + "tee/boot"}},
		{"../teeup-agent", "", agentForbidden, []string{mod + "agent", mod + "layout", mod + "nodeconfig"}},
		{"../teeup-node", "faults", nil, []string{fault}},
		{"../teeup-agent", "faults", agentForbidden[1:], []string{fault}},
	}
	for _, tt := range tests {
		t.Run(strings.TrimPrefix(tt.pkg, "../")+" tags="+tt.tags, func(t *testing.T) {
			deps := listDeps(t, tt.pkg, tt.tags)
			for _, d := range deps {
				for _, f := range tt.forbidden {
					if d == f || strings.HasPrefix(d, f+"/") {
						t.Errorf("%s links %s", tt.pkg, d)
					}
				}
			}
			for _, r := range tt.required {
				if !slices.Contains(deps, r) {
					t.Errorf("%s does not link %s (is the check looking at the right build?)", tt.pkg, r)
				}
			}
		})
	}
}

// listDeps returns `go list -deps` of pkg built with tags.
func listDeps(t *testing.T, pkg, tags string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %v", err)
	}
	args := []string{"list", "-deps"}
	if tags != "" {
		args = append(args, "-tags", tags)
	}
	cmd := exec.Command(goBin, append(args, pkg)...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	return strings.Fields(string(out))
}

// TestPlatformChosenAtBuildTime: measurement and quote verification go
// through tee/boot, the platform chosen at build time; the packages that
// the enclaves and the operator tools share do not import the simulator
// directly (tee/boot's default build does, which is the point of it).
func TestPlatformChosenAtBuildTime(t *testing.T) {
	const mod = "github.com/teeup/teeup/"
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("no go command on PATH: %v", err)
	}
	pkgs := []string{mod + "nodeapi", mod + "release", mod + "agent/...", mod + "node/...", mod + "handover/..."}
	cmd := exec.Command(goBin, append([]string{"list", "-f", `{{.ImportPath}} {{join .Imports " "}}`}, pkgs...)...)
	cmd.Env = append(cmd.Environ(), "CGO_ENABLED=0")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < len(pkgs) {
		t.Fatalf("go list listed %d packages, want at least %d:\n%s", len(lines), len(pkgs), out)
	}
	for _, l := range lines {
		f := strings.Fields(l)
		if slices.Contains(f[1:], mod+"tee/sim") {
			t.Errorf("%s imports tee/sim directly: go through tee/boot", f[0])
		}
	}
}
