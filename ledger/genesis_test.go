package ledger

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/release"
)

func genesisJSON(t *testing.T, g *Genesis) []byte {
	t.Helper()
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLoadGenesis(t *testing.T) {
	path := filepath.Join(t.TempDir(), "genesis.json")
	if err := os.WriteFile(path, genesisJSON(t, testGenesis(3)), 0o644); err != nil {
		t.Fatal(err)
	}
	g, err := LoadGenesis(path)
	if err != nil {
		t.Fatal(err)
	}
	if g.ChainID != testChain || len(g.Nodes) != 3 || len(g.Accounts) != 3 || !g.Time.Equal(genesisTime) {
		t.Fatalf("loaded %+v", g)
	}
	want := Params{BlockInterval: Duration(500 * time.Millisecond), MaxBlockTxs: 500, MaxPool: 10000}
	if g.Params != want {
		t.Fatalf("defaults: got %+v, want %+v", g.Params, want)
	}
	if n, ok := g.Node(2); !ok || n.PeerAddr != "127.0.0.1:7002" {
		t.Fatalf("Node(2) = %+v, %v", n, ok)
	}
	if _, ok := g.Node(9); ok {
		t.Fatal("Node(9) found")
	}
}

func TestGenesisParams(t *testing.T) {
	raw := genesisJSON(t, testGenesis(1))
	raw = []byte(strings.Replace(string(raw), `"block_interval": "0s"`, `"block_interval": "2s"`, 1))
	raw = []byte(strings.Replace(string(raw), `"max_pool": 0`, `"max_pool": 7`, 1))
	g, err := ParseGenesis(raw)
	if err != nil {
		t.Fatal(err)
	}
	if time.Duration(g.Params.BlockInterval) != 2*time.Second || g.Params.MaxPool != 7 || g.Params.MaxBlockTxs != DefaultMaxBlockTxs {
		t.Fatalf("params %+v", g.Params)
	}
}

func TestGenesisHashIsCanonical(t *testing.T) {
	base := testGenesis(3)
	h, err := base.Hash()
	if err != nil {
		t.Fatal(err)
	}
	// Spacing, field order, time zone and explicit defaults do not matter.
	compact, err := json.Marshal(base)
	if err != nil {
		t.Fatal(err)
	}
	var generic map[string]any
	if err := json.Unmarshal(compact, &generic); err != nil {
		t.Fatal(err)
	}
	generic["time"] = genesisTime.In(time.FixedZone("X", 3600)).Format(time.RFC3339Nano)
	generic["params"] = map[string]any{"max_pool": 10000, "block_interval": "500ms", "max_block_txs": 500}
	reordered, err := json.Marshal(generic) // map keys come out sorted: another field order
	if err != nil {
		t.Fatal(err)
	}
	for name, raw := range map[string][]byte{"indented": genesisJSON(t, base), "compact": compact, "reordered+zone+defaults": reordered} {
		g, err := ParseGenesis(raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got, err := g.Hash(); err != nil || got != h {
			t.Fatalf("%s: hash %s, want %s (%v)", name, got, h, err)
		}
	}
	// Any change of content changes the hash.
	changes := map[string]func(*Genesis){
		"chain id":     func(g *Genesis) { g.ChainID = "other" },
		"time":         func(g *Genesis) { g.Time = g.Time.Add(time.Nanosecond) },
		"node address": func(g *Genesis) { g.Nodes[0].PeerAddr = "127.0.0.1:1" },
		"balance":      func(g *Genesis) { g.Accounts[0].Balance++ },
		"kmg":          func(g *Genesis) { g.KMG.Threshold = 1 },
		"nog":          func(g *Genesis) { g.NOG.Keys = append(g.NOG.Keys, pubHex(testKey(61))) },
		"params":       func(g *Genesis) { g.Params.MaxPool = 5 },
		"operator":     func(g *Genesis) { g.Nodes[1].Operator = pubHex(testKey(70)) },
	}
	for name, change := range changes {
		g := testGenesis(3)
		change(g)
		if got, _ := g.Hash(); got == h {
			t.Errorf("%s: hash unchanged", name)
		}
	}
}

func TestGenesisRejections(t *testing.T) {
	upper := strings.ToUpper(pubHex(testKey(50)))
	cases := []struct {
		name   string
		mutate func(*Genesis)
		want   string
	}{
		{"empty chain id", func(g *Genesis) { g.ChainID = "" }, "1 to 64 characters"},
		{"long chain id", func(g *Genesis) { g.ChainID = strings.Repeat("a", 65) }, "1 to 64 characters"},
		{"upper-case chain id", func(g *Genesis) { g.ChainID = "Test" }, "may only contain"},
		{"underscore in chain id", func(g *Genesis) { g.ChainID = "a_b" }, "may only contain"},
		{"no time", func(g *Genesis) { g.Time = time.Time{} }, "time is missing"},
		{"time before 1970", func(g *Genesis) { g.Time = time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC) }, "out of range"},
		{"time after 2262", func(g *Genesis) { g.Time = time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC) }, "out of range"},
		{"no nodes", func(g *Genesis) { g.Nodes = nil }, "0 nodes, want 1 to 7"},
		{"eight nodes", func(g *Genesis) { g.Nodes = testGenesis(8).Nodes }, "8 nodes, want 1 to 7"},
		{"node id 0", func(g *Genesis) { g.Nodes[0].ID = 0 }, "id must be at least 1"},
		{"duplicate node id", func(g *Genesis) { g.Nodes[1].ID = 1 }, "id 1 appears twice"},
		{"peer address not host:port", func(g *Genesis) { g.Nodes[0].PeerAddr = "localhost" }, "peer_addr \"localhost\" is not host:port"},
		{"client address without port", func(g *Genesis) { g.Nodes[0].ClientAddr = "127.0.0.1:" }, "client_addr"},
		{"peer address without host", func(g *Genesis) { g.Nodes[0].PeerAddr = ":7001" }, "is not host:port"},
		{"duplicate peer address", func(g *Genesis) { g.Nodes[1].PeerAddr = g.Nodes[0].PeerAddr }, "is already used as node 1 peer_addr"},
		{"client address equals a peer address", func(g *Genesis) { g.Nodes[1].ClientAddr = g.Nodes[0].PeerAddr }, "already used"},
		{"long node name", func(g *Genesis) { g.Nodes[0].Name = strings.Repeat("n", 200) }, "name longer than"},
		{"operator not hex", func(g *Genesis) { g.Nodes[0].Operator = strings.Repeat("x", 64) }, "node 1: operator: public key"},
		{"operator too short", func(g *Genesis) { g.Nodes[1].Operator = "beef" }, "node 2: operator: public key \"beef\": 2 bytes"},
		{"operator upper-case", func(g *Genesis) { g.Nodes[0].Operator = upper }, "operator \"" + upper + "\" is not lower-case hex"},
		{"duplicate account", func(g *Genesis) { g.Accounts[1].Address = g.Accounts[0].Address }, "appears twice"},
		{"zero account address", func(g *Genesis) { g.Accounts[0].Address = Address{} }, "zero address"},
		{"long label", func(g *Genesis) { g.Accounts[0].Label = strings.Repeat("l", 200) }, "label longer than"},
		{"balance overflow", func(g *Genesis) { g.Accounts[0].Balance = 1 << 63; g.Accounts[1].Balance = 1 << 63 }, "balances sum to more than"},
		{"kmg without keys", func(g *Genesis) { g.KMG = release.Group{Threshold: 1} }, "kmg: group has no keys"},
		{"kmg threshold 0", func(g *Genesis) { g.KMG.Threshold = 0 }, "kmg: group threshold 0"},
		{"kmg threshold above keys", func(g *Genesis) { g.KMG.Threshold = 3 }, "kmg: group threshold 3"},
		{"kmg duplicate key", func(g *Genesis) { g.KMG.Keys[1] = g.KMG.Keys[0] }, "twice"},
		{"kmg bad key", func(g *Genesis) { g.KMG.Keys[0] = "beef" }, "kmg: group key 0"},
		{"kmg upper-case key", func(g *Genesis) { g.KMG.Keys[0] = upper }, "not lower-case hex"},
		{"nog threshold 0", func(g *Genesis) { g.NOG.Threshold = 0 }, "nog: group threshold 0"},
		{"negative max_pool", func(g *Genesis) { g.Params.MaxPool = -1 }, "max_pool -1"},
		{"huge max_pool", func(g *Genesis) { g.Params.MaxPool = MaxPoolLimit + 1 }, "max_pool"},
		{"negative max_block_txs", func(g *Genesis) { g.Params.MaxBlockTxs = -1 }, "max_block_txs -1"},
		{"huge max_block_txs", func(g *Genesis) { g.Params.MaxBlockTxs = MaxBlockTxsLimit + 1 }, "max_block_txs 1001"},
		{"tiny block_interval", func(g *Genesis) { g.Params.BlockInterval = Duration(time.Microsecond) }, "block_interval 1µs"},
		{"negative block_interval", func(g *Genesis) { g.Params.BlockInterval = Duration(-time.Second) }, "block_interval -1s"},
		{"long block_interval", func(g *Genesis) { g.Params.BlockInterval = Duration(2 * time.Hour) }, "block_interval 2h0m0s"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := testGenesis(3)
			c.mutate(g)
			err := g.Validate()
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Validate: %v, want an error containing %q", err, c.want)
			}
			// The same through the JSON path, when JSON can express it.
			if raw, merr := json.Marshal(g); merr == nil {
				if _, err := ParseGenesis(raw); err == nil {
					t.Fatal("ParseGenesis accepted it")
				}
			}
		})
	}
	if err := testGenesis(1).Validate(); err != nil {
		t.Fatalf("valid genesis refused: %v", err)
	}
	if err := testGenesis(7).Validate(); err != nil {
		t.Fatalf("valid 7-node genesis refused: %v", err)
	}
}

// TestGenesisOperator checks the optional node field "operator": accepted
// and hashed when present, absent from the canonical encoding when not, so
// genesis files written before it existed keep their hash.
func TestGenesisOperator(t *testing.T) {
	// The hash of testGenesis(3) before GenesisNode had an operator field.
	const before = "41cd550d6d613bfc225677e49681342ce8971949b1abdba2c03041a9eb314a83"
	plain := testGenesis(3)
	if h, err := plain.Hash(); err != nil || h.String() != before {
		t.Fatalf("hash of a genesis without operators %s, want it unchanged %s (%v)", h, before, err)
	}
	if raw := genesisJSON(t, plain); strings.Contains(string(raw), "operator\"") {
		t.Fatalf("a node without an operator encodes one:\n%s", raw)
	}
	g := testGenesis(3)
	op := pubHex(testKey(70))
	g.Nodes[2].Operator = op
	parsed, err := ParseGenesis(genesisJSON(t, g))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := parsed.Node(3); n.Operator != op {
		t.Fatalf("node 3 operator %q, want %q", n.Operator, op)
	}
	if n, _ := parsed.Node(1); n.Operator != "" {
		t.Fatalf("node 1 operator %q, want none", n.Operator)
	}
	if err := (GenesisNode{ID: 1, PeerAddr: "a:1", ClientAddr: "a:2", Operator: op}).Validate(); err != nil {
		t.Fatalf("valid node refused: %v", err)
	}
	if err := (GenesisNode{ID: 1, PeerAddr: "a:1", ClientAddr: "a:2", Operator: op[:62]}).Validate(); err == nil {
		t.Fatal("a short operator key was accepted")
	}
}

func TestParseGenesisRejections(t *testing.T) {
	valid := string(genesisJSON(t, testGenesis(1)))
	cases := []struct {
		name, input, want string
	}{
		{"empty", "", "EOF"},
		{"not JSON", "chain", "invalid character"},
		{"unknown field", strings.Replace(valid, `"chain_id"`, `"extra": 1, "chain_id"`, 1), "unknown field \"extra\""},
		{"unknown nested field", strings.Replace(valid, `"threshold": 2`, `"threshold": 2, "x": 0`, 1), "unknown field \"x\""},
		{"unknown node field", strings.Replace(valid, `"name": "node-1"`, `"name": "node-1", "operators": "x"`, 1), "unknown field \"operators\""},
		{"operator not a string", strings.Replace(valid, `"name": "node-1"`, `"name": "node-1", "operator": 7`, 1), "cannot unmarshal"},
		{"trailing data", valid + " {}", "data after the JSON object"},
		{"two objects", valid + valid, "data after the JSON object"},
		{"bad duration", strings.Replace(valid, `"block_interval": "0s"`, `"block_interval": "soon"`, 1), "want a Go duration"},
		{"bad address", strings.Replace(valid, addrOf(alice).String(), "abc", 1), "parse address"},
		{"negative balance", strings.Replace(valid, `"balance": 1000`, `"balance": -1`, 1), "cannot unmarshal"},
		{"bad time", strings.Replace(valid, `"2026-01-01T00:00:00Z"`, `"yesterday"`, 1), "cannot parse"},
		{"invalid content", strings.Replace(valid, `"test-chain"`, `"Bad Chain"`, 1), "may only contain"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseGenesis([]byte(c.input))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestLoadGenesisFileErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadGenesis(filepath.Join(dir, "missing.json")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("missing file: %v", err)
	}
	big := filepath.Join(dir, "big.json")
	if err := os.WriteFile(big, make([]byte, MaxGenesisSize+1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadGenesis(big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("big file: %v", err)
	}
}

func TestGenesisBlock(t *testing.T) {
	g := testGenesis(1)
	b, err := GenesisBlock(g)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := g.Hash()
	want := BlockHeader{ChainID: testChain, Height: 0, Time: genesisTime.UnixNano(), BodyHash: h}
	if b.Header != want || b.Sig != [64]byte{} || len(b.Body) != 0 {
		t.Fatalf("block 0 = %+v", b)
	}
	other := testGenesis(1)
	other.Accounts[0].Balance++
	ob, _ := GenesisBlock(other)
	if ob.Hash() == b.Hash() {
		t.Fatal("different genesis, same block 0 hash")
	}
}
