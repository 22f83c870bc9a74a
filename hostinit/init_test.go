package hostinit

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/tee/sim"
)

// caFixture is a CA directory and a copy of it holding only root.crt.
type caFixture struct {
	caDir, crtOnly, root string
	ca                   *sim.CA
}

func newCA(t *testing.T) caFixture {
	t.Helper()
	dir := t.TempDir()
	f := caFixture{caDir: filepath.Join(dir, "ca"), crtOnly: filepath.Join(dir, "ca-public")}
	var err error
	if f.ca, err = sim.InitCA(f.caDir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(f.caDir, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(f.crtOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	f.root = filepath.Join(f.crtOnly, sim.RootCertFile)
	if err := os.WriteFile(f.root, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

func testNode(id uint64) ledger.GenesisNode {
	return ledger.GenesisNode{ID: id, Name: "org", PeerAddr: "10.0.0.1:7101", ClientAddr: "10.0.0.1:7201"}
}

// hostDir returns a fresh host directory path (not created).
func hostDir(t *testing.T) string { return filepath.Join(t.TempDir(), "host") }

func TestInitByRequest(t *testing.T) {
	ca := newCA(t)
	dir := hostDir(t)
	reqOut := filepath.Join(t.TempDir(), "org.csr")
	res, err := Init(Options{Dir: dir, Node: testNode(2), RootCert: ca.root, RequestOut: reqOut, KMG: true})
	if err != nil {
		t.Fatal(err)
	}
	l := res.Layout
	if !res.PlatformPending || res.Request != reqOut || len(res.PlatformID) != 16 {
		t.Fatalf("result %+v", res)
	}
	// Every directory is the operator's only.
	for _, d := range append(l.dirs(), l.Platform()) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, mode want 0700", d, err)
		}
	}
	// Four keys generated, private files 0600.
	if len(res.Generated) != 4 {
		t.Fatalf("generated %v", res.Generated)
	}
	for _, p := range res.Generated {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 || filepath.Dir(p) != l.Keys() {
			t.Fatalf("%s: %v", p, err)
		}
	}
	h, err := LoadHost(dir)
	if err != nil {
		t.Fatal(err)
	}
	op, err := keyfile.ReadPublic(h.KeyFiles.Operator)
	if err != nil || h.Node.Operator != hexOf(op) || h.KMGKey == "" {
		t.Fatalf("host.json %+v (%v)", h, err)
	}
	if err := CheckConfigs(l.NodeConfig(), l.AgentConfig()); err != nil {
		t.Fatal(err)
	}
	// Both configurations authorise the host's own operator key for
	// remote admin; without --admin-listen/--agent-listen nothing listens.
	nc, err := node.LoadConfig(l.NodeConfig())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := agent.LoadConfig(l.AgentConfig())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(nc.AdminOperators, []string{h.Node.Operator}) || !slices.Equal(ac.AdminOperators, []string{h.Node.Operator}) || nc.AdminListen != "" || ac.AdminListen != "" {
		t.Fatalf("remote admin: node %v %q, agent %v %q", nc.AdminOperators, nc.AdminListen, ac.AdminOperators, ac.AdminListen)
	}
	// The request CA holder signs it; after installing, the platform opens.
	csr, err := os.ReadFile(reqOut)
	if err != nil {
		t.Fatal(err)
	}
	cert, req, err := ca.ca.CertifyRequest(csr)
	if err != nil || req.PlatformID != res.PlatformID {
		t.Fatalf("certify: %v", err)
	}
	p, err := sim.InstallCertificate(h.Platform, cert)
	if err != nil || p.ID() != res.PlatformID {
		t.Fatalf("install: %v", err)
	}
	// host.json and the bundle hold no private key.
	b := h.Bundle(1000, "")
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	braw, _ := b.Marshal()
	hraw, _ := os.ReadFile(l.HostFile())
	for _, f := range res.Generated {
		priv, err := keyfile.ReadPrivate(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range [][]byte{braw, hraw} {
			if bytes.Contains(doc, []byte(hexOf(priv.Seed()))) || bytes.Contains(doc, []byte("PRIVATE")) {
				t.Fatalf("a private key leaked into %s", doc)
			}
		}
	}
	if b.Account.Label != "operator-test-2" || b.Account.Balance != 1000 {
		t.Fatalf("bundle account %+v", b.Account)
	}
	// A second init of the same directory is refused and changes nothing.
	before, _ := os.ReadFile(l.HostFile())
	if _, err := Init(Options{Dir: dir, Node: testNode(2), RootCert: ca.root}); !errors.Is(err, ErrExists) {
		t.Fatalf("second init: %v", err)
	}
	if after, _ := os.ReadFile(l.HostFile()); !bytes.Equal(before, after) {
		t.Fatal("a refused init changed host.json")
	}
}

func TestInitPlatformChoices(t *testing.T) {
	ca := newCA(t)
	// A CA at hand certifies at once.
	res, err := Init(Options{Dir: hostDir(t), Node: testNode(1), CADir: ca.caDir})
	if err != nil {
		t.Fatal(err)
	}
	if res.PlatformPending {
		t.Fatal("a platform certified by a CA at hand is pending")
	}
	if _, err := sim.OpenPlatform(res.Host.Platform); err != nil {
		t.Fatal(err)
	}
	// A CA directory with only root.crt: the platform requests its
	// certificate, and no root.key appears there.
	res, err = Init(Options{Dir: hostDir(t), Node: testNode(1), CADir: ca.crtOnly})
	if err != nil {
		t.Fatal(err)
	}
	if !res.PlatformPending || res.Request != filepath.Join(res.Host.Platform, sim.AttestationCSRFile) {
		t.Fatalf("root.crt-only CA: %+v", res)
	}
	if entries, _ := os.ReadDir(ca.crtOnly); len(entries) != 1 {
		t.Fatalf("the root.crt-only CA directory holds %d files", len(entries))
	}
	// An existing platform is used as it is.
	existing := res.Host.Platform
	copyOut := filepath.Join(t.TempDir(), "again.csr")
	res, err = Init(Options{Dir: hostDir(t), Node: testNode(1), Platform: existing, RequestOut: copyOut})
	if err != nil {
		t.Fatal(err)
	}
	if res.Host.Platform != existing || !res.PlatformPending || res.Request != copyOut {
		t.Fatalf("existing platform: %+v", res)
	}
	if want, _, _ := sim.PendingRequest(existing); !bytes.Equal(readOrNil(copyOut), want) {
		t.Fatal("--request of an existing pending platform is not its request")
	}
	if _, err := os.Stat(res.Layout.Platform()); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("a platform directory was created although one was given")
	}
	nc := NodeConfig(res.Layout, ConfigOptions{NodeID: 1, Platform: existing})
	if nc.Platform != existing {
		t.Fatalf("node config platform %s", nc.Platform)
	}
}

func TestInitGivenKeys(t *testing.T) {
	ca := newCA(t)
	keys := t.TempDir()
	nogPub, err := keyfile.Generate(filepath.Join(keys, "nog.key"))
	if err != nil {
		t.Fatal(err)
	}
	opPub, err := keyfile.Generate(filepath.Join(keys, "op.key"))
	if err != nil {
		t.Fatal(err)
	}
	hexFile := filepath.Join(keys, "kmg.hex")
	kmgPub, err := keyfile.Generate(filepath.Join(keys, "kmg.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hexFile, []byte(hexOf(kmgPub)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := hostDir(t)
	res, err := Init(Options{Dir: dir, Node: testNode(3), RootCert: ca.root,
		NOGKey: filepath.Join(keys, "nog.key.pub"), OperatorKey: filepath.Join(keys, "op.key"), KMGKey: hexFile})
	if err != nil {
		t.Fatal(err)
	}
	h := res.Host
	if h.NOGKey != hexOf(nogPub) || h.Node.Operator != hexOf(opPub) || h.KMGKey != hexOf(kmgPub) {
		t.Fatalf("host keys %+v", h)
	}
	if len(res.Generated) != 1 || res.Generated[0] != res.Layout.Key(AccountKeyFile) {
		t.Fatalf("generated %v, want only the account key", res.Generated)
	}
	if h.KeyFiles.NOG != filepath.Join(keys, "nog.key.pub") {
		t.Fatalf("key files %+v", h.KeyFiles)
	}
	// Given keys are not copied into the host directory.
	entries, _ := os.ReadDir(res.Layout.Keys())
	if len(entries) != 2 { // account.key, account.key.pub
		t.Fatalf("keys dir holds %d files", len(entries))
	}
}

func TestInitRejects(t *testing.T) {
	ca := newCA(t)
	attCrt := filepath.Join(t.TempDir(), "p")
	if _, err := sim.InitPlatform(attCrt, ca.ca); err != nil {
		t.Fatal(err)
	}
	keys := t.TempDir()
	if _, err := keyfile.Generate(filepath.Join(keys, "same.key")); err != nil {
		t.Fatal(err)
	}
	garbage := filepath.Join(keys, "garbage")
	if err := os.WriteFile(garbage, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := filepath.Join(t.TempDir(), strings.Repeat("d", 90))
	cases := []struct {
		name   string
		opts   func(dir string) Options
		wantIs error
		want   string
		// untouched: nothing may have been written (early rejections)
		untouched bool
	}{
		{"no directory", func(string) Options { return Options{Node: testNode(1), RootCert: ca.root} }, ErrOptions, "host directory is required", false},
		{"node id 0", func(d string) Options { return Options{Dir: d, Node: testNode(0), RootCert: ca.root} }, ErrOptions, "id must be at least 1", true},
		{"bad peer address", func(d string) Options {
			n := testNode(1)
			n.PeerAddr = "nohost"
			return Options{Dir: d, Node: n, RootCert: ca.root}
		}, ErrOptions, "peer_addr", true},
		{"peer address is client address", func(d string) Options {
			n := testNode(1)
			n.ClientAddr = n.PeerAddr
			return Options{Dir: d, Node: n, RootCert: ca.root}
		}, ErrOptions, "are both", true},
		{"no platform option", func(d string) Options { return Options{Dir: d, Node: testNode(1)} }, ErrOptions, "say how the platform is certified", true},
		{"two platform options", func(d string) Options { return Options{Dir: d, Node: testNode(1), RootCert: ca.root, CADir: ca.caDir} }, ErrOptions, "say how the platform is certified", true},
		{"sockets too long", func(string) Options { return Options{Dir: long, Node: testNode(1), RootCert: ca.root} }, ErrOptions, "longer than 100 bytes", false},
		{"empty CA directory", func(d string) Options { return Options{Dir: d, Node: testNode(1), CADir: t.TempDir()} }, ErrOptions, "holds neither root.key nor root.crt", true},
		{"missing root", func(d string) Options {
			return Options{Dir: d, Node: testNode(1), RootCert: filepath.Join(keys, "none.crt")}
		}, ErrOptions, "root to pin", true},
		{"root is not a CA", func(d string) Options {
			return Options{Dir: d, Node: testNode(1), RootCert: filepath.Join(attCrt, sim.AttestationCrtFile)}
		}, ErrOptions, "not a CA certificate", true},
		{"not a platform", func(d string) Options { return Options{Dir: d, Node: testNode(1), Platform: t.TempDir()} }, ErrOptions, "--platform", true},
		{"given key unreadable", func(d string) Options {
			return Options{Dir: d, Node: testNode(1), RootCert: ca.root, NOGKey: garbage}
		}, ErrOptions, "neither PEM nor 64 hex digits", true},
		{"bad admin listen address", func(d string) Options {
			return Options{Dir: d, Node: testNode(1), RootCert: ca.root, Config: ConfigOptions{AdminListen: "7301"}}
		}, ErrOptions, "admin listen address", true},
		{"node and agent on one listen address", func(d string) Options {
			return Options{Dir: d, Node: testNode(1), RootCert: ca.root, Config: ConfigOptions{AdminListen: ":7301", AgentListen: ":7301"}}
		}, ErrOptions, "cannot both listen", true},
		{"one key for two roles", func(d string) Options {
			k := filepath.Join(keys, "same.key")
			return Options{Dir: d, Node: testNode(1), RootCert: ca.root, NOGKey: k, OperatorKey: k}
		}, ErrOptions, "the operator and the NOG key are the same key", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := hostDir(t)
			opts := tc.opts(dir)
			res, err := Init(opts)
			if !errors.Is(err, tc.wantIs) || !strings.Contains(err.Error(), tc.want) || res != nil {
				t.Fatalf("Init: %v, want %v containing %q", err, tc.wantIs, tc.want)
			}
			if tc.untouched {
				if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
					t.Fatalf("a rejected init created %s", dir)
				}
			}
			if opts.Dir != "" {
				if _, err := os.Stat(filepath.Join(opts.Dir, HostFile)); !errors.Is(err, fs.ErrNotExist) {
					t.Fatal("a rejected init wrote host.json")
				}
			}
		})
	}
}

func TestLoadHostRejects(t *testing.T) {
	if _, err := LoadHost(t.TempDir()); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "teeup host init") {
		t.Fatalf("no host.json: %v", err)
	}
	dir := t.TempDir()
	for name, raw := range map[string]string{
		"unknown field": `{"format":"teeup-host/1","private_key":"x"}`,
		"wrong format":  `{"format":"teeup-host/0"}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, HostFile), []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadHost(dir); err == nil {
			t.Fatalf("%s: accepted", name)
		}
	}
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func readOrNil(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// TestInitRemoteAdmin: --admin-listen and --agent-listen go into the
// configurations, with the host's operator key authorised in both.
func TestInitRemoteAdmin(t *testing.T) {
	ca := newCA(t)
	res, err := Init(Options{Dir: hostDir(t), Node: testNode(1), CADir: ca.caDir,
		Config: ConfigOptions{AdminListen: "0.0.0.0:7301", AgentListen: "0.0.0.0:7401"}})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := node.LoadConfig(res.Layout.NodeConfig())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := agent.LoadConfig(res.Layout.AgentConfig())
	if err != nil {
		t.Fatal(err)
	}
	op := res.Host.Node.Operator
	if nc.AdminListen != "0.0.0.0:7301" || ac.AdminListen != "0.0.0.0:7401" || !slices.Equal(nc.AdminOperators, []string{op}) || !slices.Equal(ac.AdminOperators, []string{op}) {
		t.Fatalf("node %q %v, agent %q %v", nc.AdminListen, nc.AdminOperators, ac.AdminListen, ac.AdminOperators)
	}
}
