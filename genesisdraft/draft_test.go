package genesisdraft

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/ledger"
)

var draftTime = time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)

// key returns a deterministic ed25519 public key as hex.
func key(n int) string {
	seed := make([]byte, ed25519.SeedSize)
	seed[0], seed[1] = byte(n), byte(n>>8)
	return hex.EncodeToString(ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey))
}

func addr(n int) ledger.Address {
	a, err := ledger.ParseAddress(key(n))
	if err != nil {
		panic(err)
	}
	return a
}

// bundle returns a valid bundle for node id with keys derived from id.
func bundle(id int) *Bundle {
	return &Bundle{
		Format: BundleFormat,
		Node: ledger.GenesisNode{ID: uint64(id), Name: fmt.Sprintf("org-%d", id),
			PeerAddr: fmt.Sprintf("10.0.0.%d:7101", id), ClientAddr: fmt.Sprintf("10.0.0.%d:7201", id), Operator: key(100 + id)},
		NOGKey:  key(200 + id),
		KMGKey:  key(300 + id),
		Account: ledger.GenesisAccount{Address: addr(400 + id), Balance: 1_000_000, Label: fmt.Sprintf("operator-test-%d", id)},
	}
}

func newDraft(t *testing.T) *Draft {
	t.Helper()
	d, err := New(Options{ChainID: "orgnet", Time: draftTime, KMGThreshold: 2, NOGThreshold: 3})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestDraftFinalize(t *testing.T) {
	d := newDraft(t)
	for _, id := range []int{3, 1, 4, 2} {
		if err := d.Add(bundle(id)); err != nil {
			t.Fatal(err)
		}
	}
	g, err := d.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Nodes) != 4 || len(g.NOG.Keys) != 4 || len(g.KMG.Keys) != 4 || len(g.Accounts) != 4 || g.NOG.Threshold != 3 || g.KMG.Threshold != 2 {
		t.Fatalf("genesis %+v", g)
	}
	for i, n := range g.Nodes {
		if n.ID != uint64(i+1) || n.Operator != key(101+i) || g.NOG.Keys[i] != key(201+i) || g.Accounts[i].Address != addr(401+i) {
			t.Fatalf("entry %d out of node order: %+v", i, n)
		}
	}
	for _, id := range []int{1, 2, 3, 4} {
		if err := CheckBundle(g, bundle(id)); err != nil {
			t.Fatalf("CheckBundle(%d): %v", id, err)
		}
	}
	// Through a file, as every operator sees it, it parses and hashes the same.
	raw, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ledger.ParseGenesis(raw)
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := g.Hash()
	h2, _ := parsed.Hash()
	if h1 != h2 {
		t.Fatalf("hash changed through the file: %s vs %s", h1, h2)
	}

	// Another operator who adds the bundles in another order, and saves and
	// reloads its draft between steps, gets the same genesis hash.
	path := filepath.Join(t.TempDir(), "draft.json")
	other := newDraft(t)
	if err := other.Save(path); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int{2, 4, 1, 3} {
		loaded, err := LoadDraft(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := loaded.Add(bundle(id)); err != nil {
			t.Fatal(err)
		}
		if err := loaded.Save(path); err != nil {
			t.Fatal(err)
		}
	}
	final, err := LoadDraft(path)
	if err != nil {
		t.Fatal(err)
	}
	g2, err := final.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	if h3, _ := g2.Hash(); h3 != h1 {
		t.Fatalf("another add order gives hash %s, want %s", h3, h1)
	}
}

func TestDraftExtras(t *testing.T) {
	d, err := New(Options{ChainID: "orgnet", Time: draftTime, KMGThreshold: 2, NOGThreshold: 1,
		ExtraKMGKeys: []string{key(900)}, ExtraNOGKeys: []string{key(901)},
		Accounts: []ledger.GenesisAccount{{Address: addr(902), Balance: 5, Label: "user"}}, Release: "1.4.0"})
	if err != nil {
		t.Fatal(err)
	}
	b := bundle(1)
	b.KMGKey = ""
	if err := d.Add(b); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Genesis(); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "KMG threshold 2 but 1 keys") {
		t.Fatalf("finalize with too few KMG keys: %v", err)
	}
	if err := d.Add(bundle(2)); err != nil {
		t.Fatal(err)
	}
	g, err := d.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{key(302), key(900)}; strings.Join(g.KMG.Keys, ",") != strings.Join(want, ",") {
		t.Fatalf("KMG keys %v, want %v", g.KMG.Keys, want)
	}
	if want := []string{key(201), key(202), key(901)}; strings.Join(g.NOG.Keys, ",") != strings.Join(want, ",") {
		t.Fatalf("NOG keys %v, want %v", g.NOG.Keys, want)
	}
	if len(g.Accounts) != 3 || g.Accounts[2].Address != addr(902) {
		t.Fatalf("accounts %+v", g.Accounts)
	}
	if g.Release != "1.4.0" {
		t.Fatalf("genesis release %q, want the draft's 1.4.0", g.Release)
	}
	// An extra key may not reappear in a bundle.
	clash := bundle(3)
	clash.NOGKey = key(900)
	if err := d.Add(clash); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "KMG key (no node)") {
		t.Fatalf("bundle reusing an extra key: %v", err)
	}
}

func TestNewDraftRejects(t *testing.T) {
	base := Options{ChainID: "orgnet", Time: draftTime, KMGThreshold: 1, NOGThreshold: 1}
	cases := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no chain id", func(o *Options) { o.ChainID = "" }, "1 to 64 characters"},
		{"bad chain id", func(o *Options) { o.ChainID = "Org Net" }, "may only contain"},
		{"time out of range", func(o *Options) { o.Time = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC) }, "out of range"},
		{"kmg threshold 0", func(o *Options) { o.KMGThreshold = 0 }, "kmg threshold 0"},
		{"nog threshold -1", func(o *Options) { o.NOGThreshold = -1 }, "nog threshold -1"},
		{"bad params", func(o *Options) { o.Params.MaxPool = -1 }, "max_pool -1"},
		{"bad release", func(o *Options) { o.Release = "v1.0" }, "release"},
		{"bad extra kmg key", func(o *Options) { o.ExtraKMGKeys = []string{"beef"} }, "kmg key"},
		{"upper-case extra nog key", func(o *Options) { o.ExtraNOGKeys = []string{strings.ToUpper(key(1))} }, "not lower-case hex"},
		{"key in both groups", func(o *Options) { o.ExtraKMGKeys = []string{key(1)}; o.ExtraNOGKeys = []string{key(1)} }, "already in the draft"},
		{"zero account", func(o *Options) { o.Accounts = []ledger.GenesisAccount{{Balance: 1}} }, "zero address"},
		{"account twice", func(o *Options) {
			o.Accounts = []ledger.GenesisAccount{{Address: addr(1), Balance: 1}, {Address: addr(1), Balance: 2}}
		}, "already in the draft"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := base
			tc.change(&o)
			d, err := New(o)
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) || d != nil {
				t.Fatalf("New: %v, want ErrMalformed containing %q", err, tc.want)
			}
		})
	}
	if _, err := New(base); err != nil {
		t.Fatal(err)
	}
	// Without a time, now to the second.
	d, err := New(Options{ChainID: "x", KMGThreshold: 1, NOGThreshold: 1})
	if err != nil || d.Time.Nanosecond() != 0 || time.Since(d.Time) > time.Minute {
		t.Fatalf("default time %v, %v", d.Time, err)
	}
}

func TestBundleRejects(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Bundle)
		want   string
	}{
		{"wrong format", func(b *Bundle) { b.Format = "teeup-host-bundle/2" }, "format"},
		{"node id 0", func(b *Bundle) { b.Node.ID = 0 }, "id must be at least 1"},
		{"bad peer address", func(b *Bundle) { b.Node.PeerAddr = "host" }, "peer_addr"},
		{"peer address is client address", func(b *Bundle) { b.Node.ClientAddr = b.Node.PeerAddr }, "are both"},
		{"no operator", func(b *Bundle) { b.Node.Operator = "" }, "no operator key"},
		{"bad operator", func(b *Bundle) { b.Node.Operator = "abc" }, "operator"},
		{"no nog key", func(b *Bundle) { b.NOGKey = "" }, "nog_key"},
		{"upper-case nog key", func(b *Bundle) { b.NOGKey = strings.ToUpper(b.NOGKey) }, "not lower-case hex"},
		{"bad kmg key", func(b *Bundle) { b.KMGKey = "zz" }, "kmg_key"},
		{"no account", func(b *Bundle) { b.Account.Address = ledger.Address{} }, "no account address"},
		{"long label", func(b *Bundle) { b.Account.Label = strings.Repeat("l", 129) }, "label longer"},
		{"operator key as nog key", func(b *Bundle) { b.NOGKey = b.Node.Operator }, "the operator key and the NOG key are the same key"},
		{"nog key as kmg key", func(b *Bundle) { b.KMGKey = b.NOGKey }, "the NOG key and the KMG key are the same key"},
		{"operator key as account", func(b *Bundle) { b.Account.Address, _ = ledger.ParseAddress(b.Node.Operator) }, "the operator key and the test account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := bundle(1)
			tc.change(b)
			err := b.Validate()
			if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate: %v, want ErrMalformed containing %q", err, tc.want)
			}
			raw, merr := json.Marshal(b)
			if merr != nil {
				t.Fatal(merr)
			}
			if _, err := ParseBundle(raw); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseBundle accepted it: %v", err)
			}
			if err := newDraft(t).Add(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("Add accepted it: %v", err)
			}
		})
	}
	good, err := bundle(1).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if b, err := ParseBundle(good); err != nil || b.Node != bundle(1).Node {
		t.Fatalf("round trip: %v", err)
	}
	for name, raw := range map[string]string{
		"empty":              "",
		"not JSON":           "bundle",
		"unknown field":      strings.Replace(string(good), `"nog_key"`, `"private_key": "x", "nog_key"`, 1),
		"unknown node field": strings.Replace(string(good), `"name"`, `"node_key": "x", "name"`, 1),
		"trailing data":      string(good) + "{}",
		"too large":          string(good) + strings.Repeat(" ", MaxBundleSize),
		"bad address":        strings.Replace(string(good), addr(401).String(), "xyz", 1),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseBundle([]byte(raw)); !errors.Is(err, ErrMalformed) {
				t.Fatalf("ParseBundle: %v, want ErrMalformed", err)
			}
		})
	}
}

func TestDraftAddConflicts(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Bundle)
		want   string
	}{
		{"same node id", func(b *Bundle) { b.Node.ID = 1 }, "node id 1 is already in the draft"},
		{"same name", func(b *Bundle) { b.Node.Name = "org-1" }, `name "org-1" is already node 1's`},
		{"same peer address", func(b *Bundle) { b.Node.PeerAddr = "10.0.0.1:7101" }, "is already node 1 peer_addr"},
		{"client address is another's peer address", func(b *Bundle) { b.Node.ClientAddr = "10.0.0.1:7101" }, "is already node 1 peer_addr"},
		{"another's NOG key", func(b *Bundle) { b.NOGKey = key(201) }, "NOG key of node 1"},
		{"another's KMG key as NOG key", func(b *Bundle) { b.NOGKey = key(301) }, "KMG key of node 1"},
		{"another's account", func(b *Bundle) { b.Account.Address = addr(401) }, "test account of node 1"},
		{"another's operator key as NOG key", func(b *Bundle) { b.NOGKey = key(101) }, "as operator key"},
		{"another's NOG key as operator key", func(b *Bundle) { b.Node.Operator = key(201) }, "NOG key of node 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := newDraft(t)
			if err := d.Add(bundle(1)); err != nil {
				t.Fatal(err)
			}
			b := bundle(2)
			tc.change(b)
			err := d.Add(b)
			if !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Add: %v, want ErrConflict containing %q", err, tc.want)
			}
			if len(d.Bundles) != 1 {
				t.Fatal("a refused bundle was added")
			}
		})
	}
	// One operator may run two nodes.
	d := newDraft(t)
	if err := d.Add(bundle(1)); err != nil {
		t.Fatal(err)
	}
	b := bundle(2)
	b.Node.Operator = key(101)
	if err := d.Add(b); err != nil {
		t.Fatalf("second node of the same operator: %v", err)
	}
	// At most seven nodes.
	d = newDraft(t)
	for id := 1; id <= ledger.MaxGenesisNodes; id++ {
		if err := d.Add(bundle(id)); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Add(bundle(8)); !errors.Is(err, ErrConflict) || !strings.Contains(err.Error(), "most a genesis allows") {
		t.Fatalf("eighth node: %v", err)
	}
	if _, err := newDraft(t).Genesis(); !errors.Is(err, ErrIncomplete) {
		t.Fatalf("finalize without bundles: %v", err)
	}
	d = newDraft(t)
	if err := d.Add(bundle(1)); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Genesis(); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "KMG threshold 2 but 1 keys") {
		t.Fatalf("finalize below a threshold: %v", err)
	}
}

func TestParseDraftRejects(t *testing.T) {
	d := newDraft(t)
	for _, id := range []int{1, 2} {
		if err := d.Add(bundle(id)); err != nil {
			t.Fatal(err)
		}
	}
	good, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseDraft(good); err != nil {
		t.Fatal(err)
	}
	dup := *d
	dup.Bundles = append(dup.Bundles, d.Bundles[0])
	dupRaw, _ := json.Marshal(&dup)
	badFormat := strings.Replace(string(good), DraftFormat, "teeup-genesis-draft/0", 1)
	cases := map[string]struct {
		raw    string
		wantIs error
		want   string
	}{
		"hand-added duplicate bundle": {string(dupRaw), ErrConflict, "bundle 2"},
		"wrong format":                {badFormat, ErrMalformed, "format"},
		"unknown field":               {strings.Replace(string(good), `"bundles"`, `"extra":1,"bundles"`, 1), ErrMalformed, "unknown field"},
		"trailing data":               {string(good) + "[]", ErrMalformed, "data after"},
		"not JSON":                    {"draft", ErrMalformed, "invalid character"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDraft([]byte(tc.raw))
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseDraft: %v, want %v containing %q", err, tc.wantIs, tc.want)
			}
		})
	}
	if _, err := LoadDraft(filepath.Join(t.TempDir(), "missing.json")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing draft: %v", err)
	}
}

func TestCheckBundleMismatch(t *testing.T) {
	d := newDraft(t)
	for _, id := range []int{1, 2, 3} {
		if err := d.Add(bundle(id)); err != nil {
			t.Fatal(err)
		}
	}
	g, err := d.Genesis()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		change func(*ledger.Genesis)
		want   string
	}{
		{"node missing", func(g *ledger.Genesis) { g.Nodes = g.Nodes[1:] }, "node 1 is not in the genesis"},
		{"address changed", func(g *ledger.Genesis) { g.Nodes[0].PeerAddr = "10.9.9.9:1" }, "node 1 is"},
		{"operator changed", func(g *ledger.Genesis) { g.Nodes[0].Operator = key(999) }, "node 1 is"},
		{"NOG key swapped", func(g *ledger.Genesis) { g.NOG.Keys[0] = key(999) }, "NOG key"},
		{"KMG key dropped", func(g *ledger.Genesis) { g.KMG.Keys = g.KMG.Keys[1:] }, "KMG key"},
		{"balance changed", func(g *ledger.Genesis) { g.Accounts[0].Balance++ }, "test account"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := *g
			c.Nodes = append([]ledger.GenesisNode(nil), g.Nodes...)
			c.NOG.Keys = append([]string(nil), g.NOG.Keys...)
			c.KMG.Keys = append([]string(nil), g.KMG.Keys...)
			c.Accounts = append([]ledger.GenesisAccount(nil), g.Accounts...)
			tc.change(&c)
			err := CheckBundle(&c, bundle(1))
			if !errors.Is(err, ErrMismatch) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckBundle: %v, want ErrMismatch containing %q", err, tc.want)
			}
		})
	}
	if err := CheckBundle(g, bundle(4)); !errors.Is(err, ErrMismatch) {
		t.Fatalf("bundle of a node not in the genesis: %v", err)
	}
}
