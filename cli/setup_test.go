package cli

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/agent"
	"github.com/teeup/teeup/genesisdraft"
	"github.com/teeup/teeup/hostinit"
	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/node"
	"github.com/teeup/teeup/tee/sim"
)

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, args...)
	if code != 0 {
		t.Fatalf("teeup %s: exit %d: %s", strings.Join(args, " "), code, errOut)
	}
	return out
}

// failRun runs the CLI, wants a non-zero exit and an error of one line
// containing want, and returns stderr.
func failRun(t *testing.T, want string, args ...string) string {
	t.Helper()
	_, errOut, code := run(t, args...)
	if code == 0 {
		t.Fatalf("teeup %s succeeded, want an error containing %q", strings.Join(args, " "), want)
	}
	if !strings.Contains(errOut, want) {
		t.Fatalf("teeup %s: stderr %q lacks %q", strings.Join(args, " "), errOut, want)
	}
	if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 {
		t.Fatalf("error is %d lines, want one: %q", n+1, errOut)
	}
	return errOut
}

func copyTestFile(t *testing.T, src, dst string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestKeysShow(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "k.key")
	pubHex := strings.TrimSpace(mustRun(t, "keys", "gen", "--out", key))
	hexFile := filepath.Join(dir, "k.hex")
	if err := os.WriteFile(hexFile, []byte(pubHex+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{key, key + ".pub", hexFile} {
		if got := strings.TrimSpace(mustRun(t, "keys", "show", f)); got != pubHex {
			t.Fatalf("keys show %s = %q, want %q", f, got, pubHex)
		}
	}
	garbage := filepath.Join(dir, "g")
	if err := os.WriteFile(garbage, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	failRun(t, "neither PEM nor 64 hex digits", "keys", "show", garbage)
	failRun(t, "no such file", "keys", "show", filepath.Join(dir, "missing"))
	failRun(t, "accepts 1 arg", "keys", "show")
}

func TestPlatformCertificationByRequest(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca-holder", "ca")
	out := mustRun(t, "platform", "ca-init", caDir)
	fp := regexp.MustCompile(`fingerprint ([0-9a-f]{64})`).FindStringSubmatch(out)
	if fp == nil {
		t.Fatalf("ca-init printed no fingerprint: %q", out)
	}
	// The host has only root.crt.
	hostRoot := filepath.Join(dir, "host", "root.crt")
	copyTestFile(t, filepath.Join(caDir, sim.RootCertFile), hostRoot)
	plat := filepath.Join(dir, "host", "platform")
	csr := filepath.Join(dir, "host", "p.csr")
	out = mustRun(t, "platform", "init", plat, "--root", hostRoot, "--request", csr)
	if !strings.Contains(out, "awaiting its certificate") || !strings.Contains(out, fp[1]) || !strings.Contains(out, "platform install-cert") {
		t.Fatalf("platform init --root: %q", out)
	}
	if out := mustRun(t, "platform", "show", plat); !strings.Contains(out, "awaiting certificate") {
		t.Fatalf("show pending: %q", out)
	}
	// The CA holder signs the request, the host installs the certificate.
	caCSR := filepath.Join(dir, "ca-holder", "p.csr")
	copyTestFile(t, csr, caCSR)
	cert := filepath.Join(dir, "ca-holder", "p.crt")
	if out := mustRun(t, "platform", "certify", "--ca", caDir, caCSR, "-o", cert); !strings.Contains(out, "certified platform") {
		t.Fatalf("certify: %q", out)
	}
	hostCert := filepath.Join(dir, "host", "p.crt")
	copyTestFile(t, cert, hostCert)
	if out := mustRun(t, "platform", "install-cert", plat, hostCert); !strings.Contains(out, "is certified") || !strings.Contains(out, fp[1]) {
		t.Fatalf("install-cert: %q", out)
	}
	var st struct {
		State, ID       string
		RootFingerprint string `json:"root_fingerprint"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "platform", "show", "--json", plat)), &st); err != nil || st.State != "certified" || st.RootFingerprint != fp[1] {
		t.Fatalf("show certified: %+v %v", st, err)
	}
	if _, err := sim.OpenPlatform(plat); err != nil {
		t.Fatal(err)
	}

	// 'platform init --ca DIR' where DIR holds only root.crt: a request, no
	// stray root.key, exit 0.
	crtOnly := filepath.Join(dir, "host2", "ca")
	copyTestFile(t, filepath.Join(caDir, sim.RootCertFile), filepath.Join(crtOnly, sim.RootCertFile))
	plat2 := filepath.Join(dir, "host2", "platform")
	if out := mustRun(t, "platform", "init", plat2, "--ca", crtOnly); !strings.Contains(out, "awaiting its certificate") {
		t.Fatalf("platform init --ca root.crt-only: %q", out)
	}
	if entries, _ := os.ReadDir(crtOnly); len(entries) != 1 {
		t.Fatalf("root.crt-only CA directory holds %d files after platform init (stray root.key?)", len(entries))
	}
	if _, ok, err := sim.PendingRequest(plat2); !ok || err != nil {
		t.Fatalf("platform 2 not pending: %v", err)
	}

	// Rejections.
	otherCA := filepath.Join(dir, "other-ca")
	mustRun(t, "platform", "ca-init", otherCA)
	otherCert := filepath.Join(dir, "other.crt")
	mustRun(t, "platform", "certify", "--ca", otherCA, filepath.Join(plat2, sim.AttestationCSRFile), "-o", otherCert)
	tampered := filepath.Join(dir, "tampered.csr")
	raw, err := os.ReadFile(filepath.Join(plat2, sim.AttestationCSRFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tampered, tamperRequest(t, raw), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"certify with a CA dir lacking root.key", []string{"platform", "certify", "--ca", crtOnly, caCSR, "-o", filepath.Join(dir, "x.crt")}, "read key"},
		{"certify a tampered request", []string{"platform", "certify", "--ca", caDir, tampered, "-o", filepath.Join(dir, "x.crt")}, "signature does not verify"},
		{"certify a certificate", []string{"platform", "certify", "--ca", caDir, cert, "-o", filepath.Join(dir, "x.crt")}, "malformed certificate request"},
		{"certify over an existing file", []string{"platform", "certify", "--ca", caDir, caCSR, "-o", cert}, "already exists"},
		{"certify without -o", []string{"platform", "certify", "--ca", caDir, caCSR}, "-o CERT are required"},
		{"install a certificate of another CA", []string{"platform", "install-cert", plat2, otherCert}, "not issued by the pinned root"},
		{"install another platform's certificate", []string{"platform", "install-cert", plat2, hostCert}, "another attestation key"},
		{"install over a certified platform", []string{"platform", "install-cert", plat, otherCert}, "not issued by the pinned root"},
		{"init over a platform", []string{"platform", "init", plat, "--root", hostRoot}, "already exists"},
		{"init with --root and --ca", []string{"platform", "init", filepath.Join(dir, "p3"), "--root", hostRoot, "--ca", caDir}, "not both"},
		{"init --request without a root", []string{"platform", "init", filepath.Join(dir, "p3"), "--request", filepath.Join(dir, "p3.csr")}, "--request needs the root"},
		{"init --request with the CA key at hand", []string{"platform", "init", filepath.Join(dir, "p3"), "--ca", caDir, "--request", filepath.Join(dir, "p3.csr")}, "certified at once"},
		{"init pinning a non-CA certificate", []string{"platform", "init", filepath.Join(dir, "p3"), "--root", hostCert}, "not a CA certificate"},
		{"ca-init twice", []string{"platform", "ca-init", caDir}, "already exists"},
		{"show a non-platform", []string{"platform", "show", dir}, "run 'teeup platform init"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { failRun(t, tc.want, tc.args...) })
	}
	if _, err := os.Stat(filepath.Join(dir, "p3")); err == nil {
		if entries, _ := os.ReadDir(filepath.Join(dir, "p3")); len(entries) != 0 {
			t.Fatal("a refused platform init left files")
		}
	}
	if _, ok, _ := sim.PendingRequest(plat2); !ok {
		t.Fatal("refused installs changed the pending platform")
	}
}

// tamperRequest changes one hex digit of the platform id in a PEM request.
func tamperRequest(t *testing.T, raw []byte) []byte {
	t.Helper()
	req, err := sim.ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	i := bytes.Index(blk.Bytes, []byte(req.PlatformID))
	if i < 0 {
		t.Fatal("platform id not in the request")
	}
	// Another printable character, so that the request still parses and
	// only its signature fails ('a' ^ 1 would be '`', not printable in
	// ASN.1's PrintableString).
	if blk.Bytes[i] == '0' {
		blk.Bytes[i] = '1'
	} else {
		blk.Bytes[i] = '0'
	}
	return pem.EncodeToMemory(blk)
}

func TestHostInitCommand(t *testing.T) {
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	mustRun(t, "platform", "ca-init", caDir)
	root := filepath.Join(caDir, sim.RootCertFile)
	host := filepath.Join(dir, "h")
	out := mustRun(t, "host", "init", host, "--node-id", "3", "--name", "org-c", "--peer-addr", "10.1.0.3:7101", "--client-addr", "10.1.0.3:7201",
		"--root", root, "--kmg", "--peer-listen", "0.0.0.0:7101", "--no-distribute")
	for _, want := range []string{"host org-c (node 3) prepared", "awaiting its certificate", "teeup host bundle", "teeup-agent run --config"} {
		if !strings.Contains(out, want) {
			t.Fatalf("host init output lacks %q:\n%s", want, out)
		}
	}
	l := hostinit.Layout{Dir: host}
	nc, err := node.LoadConfig(l.NodeConfig())
	if err != nil {
		t.Fatal(err)
	}
	if nc.NodeID != 3 || nc.Bootstrap || nc.PeerListen != "0.0.0.0:7101" || nc.Genesis != l.Genesis() {
		t.Fatalf("node config %+v", nc)
	}
	ac, err := agent.LoadConfig(l.AgentConfig())
	if err != nil {
		t.Fatal(err)
	}
	if ac.Distribute != nil || ac.NodeConfig != l.NodeConfig() || ac.InitialNodeBinary != filepath.Join(l.Release(), "teeup-node") {
		t.Fatalf("agent config %+v", ac)
	}
	for _, d := range []string{host, l.Keys(), l.Data(), l.Agent(), l.Logs(), l.Release(), l.Platform()} {
		if st, err := os.Stat(d); err != nil || st.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v, want mode 0700", d, err)
		}
	}
	// Node 1 bootstraps by default; --bootstrap=false overrides.
	h1 := filepath.Join(dir, "h1")
	mustRun(t, "host", "init", h1, "--node-id", "1", "--peer-addr", "10.1.0.1:7101", "--client-addr", "10.1.0.1:7201", "--ca", caDir)
	if nc, err := node.LoadConfig(filepath.Join(h1, "node.json")); err != nil || !nc.Bootstrap {
		t.Fatalf("node 1 does not bootstrap: %v", err)
	}
	h2 := filepath.Join(dir, "h2")
	mustRun(t, "host", "init", h2, "--node-id", "1", "--peer-addr", "10.1.0.1:7101", "--client-addr", "10.1.0.1:7201", "--ca", caDir, "--bootstrap=false")
	if nc, err := node.LoadConfig(filepath.Join(h2, "node.json")); err != nil || nc.Bootstrap {
		t.Fatalf("--bootstrap=false ignored: %v", err)
	}

	// host bundle.
	out = mustRun(t, "host", "bundle", host, "--balance", "77")
	b, err := genesisdraft.LoadBundle(l.BundleFile())
	if err != nil || b.Node.ID != 3 || b.Account.Balance != 77 || b.KMGKey == "" || !strings.Contains(out, "written to") {
		t.Fatalf("bundle %+v %v: %s", b, err, out)
	}
	other := filepath.Join(dir, "b.json")
	mustRun(t, "host", "bundle", host, "-o", other, "--label", "org-c-test")
	if b, err := genesisdraft.LoadBundle(other); err != nil || b.Account.Label != "org-c-test" || b.Account.Balance != DefaultTestBalance {
		t.Fatalf("bundle -o: %+v %v", b, err)
	}

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no node id", []string{"host", "init", filepath.Join(dir, "x"), "--peer-addr", "a:1", "--client-addr", "a:2", "--root", root}, "--node-id, --peer-addr and --client-addr are required"},
		{"no platform choice", []string{"host", "init", filepath.Join(dir, "x"), "--node-id", "2", "--peer-addr", "a:1", "--client-addr", "a:2"}, "say how the platform is certified"},
		{"bad address", []string{"host", "init", filepath.Join(dir, "x"), "--node-id", "2", "--peer-addr", "a", "--client-addr", "a:2", "--root", root}, "is not host:port"},
		{"twice", []string{"host", "init", host, "--node-id", "3", "--peer-addr", "a:1", "--client-addr", "a:2", "--root", root}, "host already initialized"},
		{"bundle of a non-host", []string{"host", "bundle", dir}, "teeup host init"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { failRun(t, tc.want, tc.args...) })
	}
}

func TestGenesisCommands(t *testing.T) {
	dir := t.TempDir()
	draft := filepath.Join(dir, "draft.json")
	var bundles []string
	for id := 1; id <= 3; id++ {
		n := strconv.Itoa(id)
		host := filepath.Join(dir, "h"+n)
		args := []string{"host", "init", host, "--node-id", n, "--peer-addr", "127.0.0.1:1" + n, "--client-addr", "127.0.0.1:2" + n, "--ca", filepath.Join(dir, "ca")}
		if id <= 2 {
			args = append(args, "--kmg")
		}
		if id == 1 {
			mustRun(t, "platform", "ca-init", filepath.Join(dir, "ca"))
		}
		mustRun(t, args...)
		mustRun(t, "host", "bundle", host)
		bundles = append(bundles, filepath.Join(host, "bundle.json"))
	}
	user := filepath.Join(dir, "user.key")
	mustRun(t, "keys", "gen", "--out", user)
	extraNOG := filepath.Join(dir, "nog-x.key")
	extraHex := strings.TrimSpace(mustRun(t, "keys", "gen", "--out", extraNOG))
	out := mustRun(t, "genesis", "init", "--draft", draft, "--chain-id", "orgnet", "--kmg-threshold", "2", "--nog-threshold", "3",
		"--time", "2026-11-21T00:00:00Z", "--block-interval", "200ms", "--nog-key", extraNOG+".pub", "--account", user+"=500:user-1", "--release", "1.0.0")
	if !strings.Contains(out, "chain orgnet, time 2026-11-21T00:00:00Z") {
		t.Fatalf("genesis init: %q", out)
	}
	failRun(t, "already exists", "genesis", "init", "--draft", draft, "--chain-id", "orgnet", "--kmg-threshold", "2", "--nog-threshold", "3")
	out = mustRun(t, "genesis", "add", "--draft", draft, bundles[0])
	if !strings.Contains(out, "not ready to finalize") {
		t.Fatalf("add one: %q", out)
	}
	failRun(t, "KMG threshold 2 but 1 keys", "genesis", "finalize", "--draft", draft, "--out", filepath.Join(dir, "g.json"))
	// A conflicting bundle among several: nothing is added.
	failRun(t, "node id 1 is already in the draft", "genesis", "add", "--draft", draft, bundles[1], bundles[0])
	if d, err := genesisdraft.LoadDraft(draft); err != nil || len(d.Bundles) != 1 {
		t.Fatalf("after a refused add: %v, %d bundles", err, len(d.Bundles))
	}
	out = mustRun(t, "genesis", "add", "--draft", draft, bundles[2], bundles[1])
	if !strings.Contains(out, "ready: teeup genesis finalize") || !strings.Contains(out, "3 nodes, KMG 2 keys (threshold 2), NOG 4 keys (threshold 3)") {
		t.Fatalf("add: %q", out)
	}
	gpath := filepath.Join(dir, "genesis.json")
	out = mustRun(t, "genesis", "finalize", "--draft", draft, "--out", gpath)
	m := regexp.MustCompile(`genesis hash ([0-9a-f]{64})`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("finalize printed no hash: %q", out)
	}
	g, err := ledger.LoadGenesis(gpath)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := g.Hash(); h.String() != m[1] {
		t.Fatalf("printed hash %s, file hashes %s", m[1], h)
	}
	if len(g.Nodes) != 3 || g.Nodes[0].Operator == "" || g.NOG.Keys[3] != extraHex || len(g.Accounts) != 4 || g.Accounts[3].Label != "user-1" || time.Duration(g.Params.BlockInterval) != 200*time.Millisecond || g.Release != "1.0.0" {
		t.Fatalf("genesis %+v", g)
	}
	failRun(t, "already exists", "genesis", "finalize", "--draft", draft, "--out", gpath)
	out = mustRun(t, "genesis", "verify", gpath, "--bundle", bundles[0], "--bundle", bundles[2])
	if !strings.Contains(out, "genesis hash "+m[1]) || strings.Count(out, "contained as made") != 2 {
		t.Fatalf("verify: %q", out)
	}
	var v genesisVerification
	if err := json.Unmarshal([]byte(mustRun(t, "genesis", "verify", "--json", gpath)), &v); err != nil || v.Hash != m[1] || v.Nodes != 3 {
		t.Fatalf("verify --json: %+v %v", v, err)
	}
	// A bundle whose balance was changed in the genesis does not verify.
	raw, _ := os.ReadFile(gpath)
	changed := filepath.Join(dir, "changed.json")
	if err := os.WriteFile(changed, bytes.Replace(raw, []byte(`"balance": 1000000000`), []byte(`"balance": 1000000001`), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, errOut, code := run(t, "genesis", "verify", changed, "--bundle", bundles[0]); code != 1 || !strings.Contains(errOut, "genesis does not match the bundle") {
		t.Fatalf("verify of a changed genesis: exit %d %q", code, errOut)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"init without chain id", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--kmg-threshold", "1", "--nog-threshold", "1"}, "--chain-id, --kmg-threshold and --nog-threshold are required"},
		{"init bad chain id", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--chain-id", "Org Net", "--kmg-threshold", "1", "--nog-threshold", "1"}, "may only contain"},
		{"init bad time", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--chain-id", "x", "--kmg-threshold", "1", "--nog-threshold", "1", "--time", "tomorrow"}, "--time"},
		{"init bad account", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--chain-id", "x", "--kmg-threshold", "1", "--nog-threshold", "1", "--account", "abc"}, "ADDRESS=BALANCE"},
		{"init bad release", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--chain-id", "x", "--kmg-threshold", "1", "--nog-threshold", "1", "--release", "v1"}, "release"},
		{"init bad key", []string{"genesis", "init", "--draft", filepath.Join(dir, "d2"), "--chain-id", "x", "--kmg-threshold", "1", "--nog-threshold", "1", "--kmg-key", "nokey"}, "--kmg-key"},
		{"add to a missing draft", []string{"genesis", "add", "--draft", filepath.Join(dir, "none.json"), bundles[0]}, "no such file"},
		{"add a non-bundle", []string{"genesis", "add", "--draft", draft, gpath}, "malformed"},
		{"verify a non-genesis", []string{"genesis", "verify", bundles[0]}, "unknown field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) { failRun(t, tc.want, tc.args...) })
	}
}

// operatorSecrets are the private material of one host: every private key
// file's PEM, every key's seed, the platform secret and the attestation key.
func operatorSecrets(t *testing.T, hostDir string) map[string][]byte {
	t.Helper()
	secrets := map[string][]byte{}
	err := filepath.WalkDir(hostDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		switch {
		case bytes.Contains(raw, []byte("PRIVATE KEY")):
			secrets[p] = raw
			if k, err := keyfile.ParsePrivate(raw); err == nil {
				secrets[p+" seed"] = k.Seed()
				secrets[p+" seed hex"] = []byte(hex.EncodeToString(k.Seed()))
			}
		case filepath.Base(p) == sim.SecretFile:
			secrets[p] = raw
			secrets[p+" hex"] = []byte(hex.EncodeToString(raw))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return secrets
}

// assertNoSecretIn fails if any file under dir contains one of secrets.
func assertNoSecretIn(t *testing.T, dir string, secrets map[string][]byte) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for name, s := range secrets {
			if bytes.Contains(raw, s) {
				t.Errorf("%s contains %s", p, name)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestFourOperatorGenesis assembles a 4-operator network as four separate
// organisations would: a CA holder, four hosts in four separate directories
// (each makes its own platform, keys and bundle and holds only its own
// private keys), and an assembler that sees only bundles. Only public files
// travel between the directories (copied, as by mail). Every host checks
// the genesis against its own bundle and prints the same hash; no
// directory holds another party's private key or platform secret.
func TestFourOperatorGenesis(t *testing.T) {
	base := t.TempDir()
	caHolder := filepath.Join(base, "ca-holder")
	assembler := filepath.Join(base, "assembler")
	caDir := filepath.Join(caHolder, "ca")
	mustRun(t, "platform", "ca-init", caDir)

	hosts := make([]string, 4)
	for i := range hosts {
		id := i + 1
		org := filepath.Join(base, "org-"+string(rune('a'+i)))
		hosts[i] = filepath.Join(org, "teeup")
		// The CA holder publishes root.crt; the host keeps a copy.
		root := filepath.Join(org, "root.crt")
		copyTestFile(t, filepath.Join(caDir, sim.RootCertFile), root)
		args := []string{"host", "init", hosts[i], "--node-id", itoa(id), "--name", "org-" + string(rune('a'+i)),
			"--peer-addr", "10.77.0." + itoa(id) + ":7101", "--client-addr", "10.77.0." + itoa(id) + ":7201",
			"--root", root, "--request", filepath.Join(org, "platform.csr")}
		if id <= 3 {
			args = append(args, "--kmg")
		}
		mustRun(t, args...)
		// Request to the CA holder, certificate back.
		copyTestFile(t, filepath.Join(org, "platform.csr"), filepath.Join(caHolder, "org-"+itoa(id)+".csr"))
		mustRun(t, "platform", "certify", "--ca", caDir, filepath.Join(caHolder, "org-"+itoa(id)+".csr"), "-o", filepath.Join(caHolder, "org-"+itoa(id)+".crt"))
		copyTestFile(t, filepath.Join(caHolder, "org-"+itoa(id)+".crt"), filepath.Join(org, "platform.crt"))
		mustRun(t, "platform", "install-cert", filepath.Join(hosts[i], "platform"), filepath.Join(org, "platform.crt"))
		mustRun(t, "host", "bundle", hosts[i])
		copyTestFile(t, filepath.Join(hosts[i], "bundle.json"), filepath.Join(assembler, "org-"+itoa(id)+".json"))
	}

	draft := filepath.Join(assembler, "genesis.draft.json")
	mustRun(t, "genesis", "init", "--draft", draft, "--chain-id", "orgnet", "--kmg-threshold", "2", "--nog-threshold", "3")
	// Bundles arrive in any order.
	mustRun(t, "genesis", "add", "--draft", draft, filepath.Join(assembler, "org-3.json"), filepath.Join(assembler, "org-1.json"))
	mustRun(t, "genesis", "add", "--draft", draft, filepath.Join(assembler, "org-4.json"), filepath.Join(assembler, "org-2.json"))
	gpath := filepath.Join(assembler, "genesis.json")
	out := mustRun(t, "genesis", "finalize", "--draft", draft, "--out", gpath)
	hash := regexp.MustCompile(`genesis hash ([0-9a-f]{64})`).FindStringSubmatch(out)
	if hash == nil {
		t.Fatalf("no hash: %s", out)
	}

	g, err := ledger.LoadGenesis(gpath)
	if err != nil {
		t.Fatalf("the genesis does not validate: %v", err)
	}
	if len(g.Nodes) != 4 || len(g.KMG.Keys) != 3 || len(g.NOG.Keys) != 4 || len(g.Accounts) != 4 {
		t.Fatalf("genesis %+v", g)
	}
	for i, h := range hosts {
		// Each operator installs the genesis and checks it against its own bundle.
		copyTestFile(t, gpath, filepath.Join(h, "genesis.json"))
		out := mustRun(t, "genesis", "verify", filepath.Join(h, "genesis.json"), "--bundle", filepath.Join(h, "bundle.json"))
		if !strings.Contains(out, "genesis hash "+hash[1]) {
			t.Fatalf("host %d sees another hash: %s", i+1, out)
		}
		host, err := hostinit.LoadHost(h)
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := g.Node(uint64(i + 1)); !ok || n.Operator != host.Node.Operator {
			t.Fatalf("node %d operator %q, host's %q", i+1, n.Operator, host.Node.Operator)
		}
		// The host's configurations name a node that is in the genesis, and
		// its platform is complete.
		if err := hostinit.CheckConfigs(filepath.Join(h, "node.json"), filepath.Join(h, "agent.json")); err != nil {
			t.Fatal(err)
		}
		nc, _ := node.LoadConfig(filepath.Join(h, "node.json"))
		if _, ok := g.Node(nc.NodeID); !ok || nc.Bootstrap != (i == 0) {
			t.Fatalf("host %d node config %+v", i+1, nc)
		}
		if _, err := sim.OpenPlatform(nc.Platform); err != nil {
			t.Fatal(err)
		}
	}

	// No directory holds another party's private material.
	parties := append([]string{caHolder}, func() []string {
		var orgs []string
		for _, h := range hosts {
			orgs = append(orgs, filepath.Dir(h))
		}
		return orgs
	}()...)
	parties = append(parties, assembler)
	for _, owner := range parties {
		secrets := operatorSecrets(t, owner)
		if owner != assembler && len(secrets) == 0 {
			t.Fatalf("%s holds no private material: the check would prove nothing", owner)
		}
		for _, other := range parties {
			if other != owner {
				assertNoSecretIn(t, other, secrets)
			}
		}
	}
	if s := operatorSecrets(t, assembler); len(s) != 0 {
		t.Fatalf("the assembler holds private material: %v", keysOf(s))
	}
}

func keysOf(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestREADMEDocumentsEveryCommand checks that every teeup command appears in
// README.md as `teeup PATH...` (or in a group such as `teeup bench a|b`).
func TestREADMEDocumentsEveryCommand(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, s := range c.Commands() {
			if s.Name() == "help" || s.Name() == "completion" {
				continue
			}
			walk(s)
		}
		if c.HasSubCommands() {
			return
		}
		path := c.CommandPath()
		parent, name := c.Parent().CommandPath(), c.Name()
		group := regexp.MustCompile("`" + regexp.QuoteMeta(parent) + ` [a-z|-]*\b` + regexp.QuoteMeta(name) + `\b`)
		if !strings.Contains(readme, "`"+path) && !group.MatchString(readme) {
			t.Errorf("README.md does not document %q", path)
		}
	}
	walk(NewRoot())
}
