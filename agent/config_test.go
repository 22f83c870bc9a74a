package agent

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/layout"
)

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The agent finds the node's sockets where node.json puts them, and its
// data dir from node.json unless node_data_dir says the same.
func TestResolveNode(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	plain := writeFile(t, filepath.Join(dir, "plain.json"), `{"node_id":1,"genesis":"g.json","data_dir":"data"}`)
	moved := writeFile(t, filepath.Join(dir, "moved.json"),
		`{"node_id":1,"genesis":"g.json","data_dir":"data","admin_socket":"/run/teeup/admin.sock","handover_socket":"sockets/handover.sock"}`)
	tests := []struct {
		name                    string
		cfg                     Config
		admin, handover, ledger string
	}{
		{"defaults", Config{NodeConfig: plain}, layout.Node(data).AdminSocket(), layout.Node(data).HandoverSocket(), layout.Node(data).Ledger()},
		{"sockets moved by node.json", Config{NodeConfig: moved}, "/run/teeup/admin.sock", filepath.Join(dir, "sockets", "handover.sock"), layout.Node(data).Ledger()},
		{"node_data_dir that agrees", Config{NodeConfig: plain, NodeDataDir: data + "/"}, layout.Node(data).AdminSocket(), layout.Node(data).HandoverSocket(), layout.Node(data).Ledger()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nf, err := tt.cfg.resolveNode()
			if err != nil {
				t.Fatal(err)
			}
			if nf.adminSocket != tt.admin || nf.handoverSocket != tt.handover || nf.data.Ledger() != tt.ledger {
				t.Fatalf("resolved %+v, want admin %s handover %s ledger %s", nf, tt.admin, tt.handover, tt.ledger)
			}
		})
	}
	bad := []struct {
		name string
		cfg  Config
	}{
		{"node_data_dir that disagrees", Config{NodeConfig: plain, NodeDataDir: filepath.Join(dir, "elsewhere")}},
		{"missing node config", Config{NodeConfig: filepath.Join(dir, "missing.json")}},
		{"node config without data_dir", Config{NodeConfig: writeFile(t, filepath.Join(dir, "nodata.json"), `{"node_id":1}`)}},
		{"node config with unknown fields", Config{NodeConfig: writeFile(t, filepath.Join(dir, "bogus.json"), `{"node_id":1,"data_dir":"d","bogus":1}`)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if nf, err := tt.cfg.resolveNode(); err == nil {
				t.Fatalf("resolved %+v", nf)
			}
		})
	}
}

// An agent directory that already exists with group or other access is
// refused before the agent writes anything in it.
func TestRunRefusesSharedAgentDir(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("ab", 32)
	genesis := writeFile(t, filepath.Join(dir, "genesis.json"), `{"chain_id":"c","kmg":{"keys":["`+key+`"],"threshold":1}}`)
	nodeCfg := writeFile(t, filepath.Join(dir, "node.json"), `{"node_id":1,"genesis":"genesis.json","data_dir":"data"}`)
	agentDir := filepath.Join(dir, "agent")
	if err := os.Mkdir(agentDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(agentDir, 0o755); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), Config{NodeID: 1, Genesis: genesis, Dir: agentDir, NodeConfig: nodeCfg,
		InitialRelease: filepath.Join(dir, "release.json"), InitialNodeBinary: filepath.Join(dir, "teeup-node")}, Options{Stderr: io.Discard})
	if !errors.Is(err, fsutil.ErrNotPrivate) {
		t.Fatalf("Run over a 0755 agent dir: %v, want fsutil.ErrNotPrivate", err)
	}
	if ents, _ := os.ReadDir(agentDir); len(ents) != 0 {
		t.Fatalf("the refused agent dir holds %d entries", len(ents))
	}
}

// A malformed admin_operators key is a configuration error.
func TestValidateAdminOperators(t *testing.T) {
	ok := Config{NodeID: 1, Genesis: "g", Dir: "d", NodeConfig: "n", InitialRelease: "r", InitialNodeBinary: "b",
		AdminListen: "127.0.0.1:7401", AdminOperators: []string{strings.Repeat("ab", 32)}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := ok
	bad.AdminOperators = []string{"abc"}
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "admin_operators") {
		t.Fatalf("Validate = %v", err)
	}
}
