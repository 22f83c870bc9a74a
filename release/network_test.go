package release

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadNetwork(t *testing.T) {
	key := strings.Repeat("ab", 32)
	dir := t.TempDir()
	good := filepath.Join(dir, "genesis.json")
	doc := `{"chain_id":"devnet","nodes":[{"id":1}],"kmg":{"keys":["` + key + `"],"threshold":1},"nog":{"keys":[],"threshold":0}}`
	if err := os.WriteFile(good, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	n, err := LoadNetwork(good)
	if err != nil {
		t.Fatal(err)
	}
	if n.ChainID != "devnet" || n.KMG.Threshold != 1 || len(n.KMG.Keys) != 1 {
		t.Fatalf("network = %+v", n)
	}
	tests := []struct{ name, doc string }{
		{"not json", `chain_id=devnet`},
		{"no chain id", `{"kmg":{"keys":["` + key + `"],"threshold":1}}`},
		{"no group", `{"chain_id":"devnet"}`},
		{"threshold above the keys", `{"chain_id":"devnet","kmg":{"keys":["` + key + `"],"threshold":2}}`},
		{"bad key", `{"chain_id":"devnet","kmg":{"keys":["zz"],"threshold":1}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseNetwork([]byte(tt.doc)); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := LoadNetwork(filepath.Join(dir, "missing.json")); err == nil {
		t.Fatal("a missing file was accepted")
	}
}
