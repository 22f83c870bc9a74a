package hostinit

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite docs/examples from what host init writes")

// exampleDir is the host directory the checked-in examples describe.
const exampleDir = "/srv/teeup"

// exampleOperator is the operator key in the examples (the public key of
// RFC 8032's first test vector: a real ed25519 key nobody uses).
const exampleOperator = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"

// TestExampleConfigs checks that docs/examples/node.json and agent.json are
// exactly what 'teeup host init /srv/teeup --node-id 1 --admin-listen
// 0.0.0.0:7301 --agent-listen 0.0.0.0:7401 ...' writes, and that
// the programs' own loaders accept them (go test ./hostinit -run
// TestExampleConfigs -update rewrites them).
func TestExampleConfigs(t *testing.T) {
	l := Layout{Dir: exampleDir}
	o := ConfigOptions{NodeID: 1, Bootstrap: true, AdminListen: "0.0.0.0:7301", AgentListen: "0.0.0.0:7401", Operators: []string{exampleOperator}}
	nc, err := EncodeNodeConfig(NodeConfig(l, o))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := EncodeAgentConfig(AgentConfig(l, o))
	if err != nil {
		t.Fatal(err)
	}
	examples := filepath.Join("..", "docs", "examples")
	for _, f := range []struct {
		name string
		want []byte
	}{{NodeConfigFile, nc}, {AgentConfigFile, ac}} {
		path := filepath.Join(examples, f.name)
		if *update {
			if err := os.WriteFile(path, f.want, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("%s differs from what host init writes (run go test ./hostinit -run TestExampleConfigs -update):\n%s\nwant:\n%s", path, got, f.want)
		}
	}
	if err := CheckConfigs(filepath.Join(examples, NodeConfigFile), filepath.Join(examples, AgentConfigFile)); err != nil {
		t.Fatalf("the examples do not load: %v", err)
	}
}
