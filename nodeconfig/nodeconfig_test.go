package nodeconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "node.json")
	if err := os.WriteFile(p, []byte(`{"node_id": 2, "genesis": "g.json", "data_dir": "/abs/data", "submit_timeout": "3s"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if c.Genesis != filepath.Join(dir, "g.json") || c.DataDir != "/abs/data" || time.Duration(c.SubmitTimeout) != 3*time.Second {
		t.Fatalf("config = %+v", c)
	}
	d := c.WithDefaults()
	if d.AdminSocket != "/abs/data/admin.sock" || d.IngressCloseBlocks != 2 || d.LogLevel != "info" {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestConfigRejections(t *testing.T) {
	tests := []struct {
		name, json, want string
	}{
		{"unknown field", `{"node_id":1,"genesis":"g","data_dir":"d","bogus":1}`, "unknown field"},
		{"bad duration", `{"node_id":1,"genesis":"g","data_dir":"d","submit_timeout":"soon"}`, "duration"},
		{"negative duration", `{"node_id":1,"genesis":"g","data_dir":"d","submit_timeout":"-1s"}`, "negative"},
		{"not json", `node_id=1`, "invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.json")
			if err := os.WriteFile(p, []byte(tt.json), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Load(p); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("LoadConfig = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{NodeID: 1, Genesis: "g", DataDir: "d", AdminListen: "127.0.0.1:7301", AdminOperators: []string{strings.Repeat("ab", 32)}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		mut  func(*Config)
		want string
	}{
		{"no node id", func(c *Config) { c.NodeID = 0 }, "node_id"},
		{"no genesis", func(c *Config) { c.Genesis = "" }, "genesis"},
		{"no data dir", func(c *Config) { c.DataDir = "" }, "data_dir"},
		{"bad log level", func(c *Config) { c.LogLevel = "loud" }, "log_level"},
		{"socket path too long", func(c *Config) { c.AdminSocket = "/" + strings.Repeat("x", 120) }, "too long"},
		{"admin operator not hex", func(c *Config) { c.AdminOperators = []string{"zz"} }, "admin_operators"},
		{"admin operator too short", func(c *Config) { c.AdminOperators = []string{strings.Repeat("ab", 31)} }, "admin_operators"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.mut(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}
