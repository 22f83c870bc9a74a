package cli

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/release"
	"github.com/teeup/teeup/tee/sim"
)

// runRelease runs 'teeup release ARGS...' and returns its standard output.
func runRelease(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newReleaseCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	cmd.SilenceUsage, cmd.SilenceErrors = true, true
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

// releaseFixture is a directory with signed node and agent binaries, a
// distribute binary and three KMG keys.
type releaseFixture struct {
	dir, node, agent, distribute string
	keys                         []string // private key files
	pubs                         []string // hex public keys
}

func newReleaseFixture(t *testing.T) *releaseFixture {
	t.Helper()
	dir := t.TempDir()
	f := &releaseFixture{dir: dir}
	signerPath := filepath.Join(dir, "keys", "signer.pem")
	if _, err := keyfile.Generate(signerPath); err != nil {
		t.Fatal(err)
	}
	signer, err := keyfile.ReadPrivate(signerPath)
	if err != nil {
		t.Fatal(err)
	}
	bins := filepath.Join(dir, "bin")
	if err := os.Mkdir(bins, 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, content string) string {
		p := filepath.Join(bins, name)
		if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	f.node = write("teeup-node", "node code 2.0.0")
	f.agent = write("teeup-agent", "agent code 2.0.0")
	f.distribute = write("teeup-distribute", "distribute code 2.0.0")
	if _, err := sim.SignBinary(f.node, 1, 2, signer); err != nil {
		t.Fatal(err)
	}
	if _, err := sim.SignBinary(f.agent, 2, 2, signer); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		p := filepath.Join(dir, "keys", "kmg"+string(rune('1'+i))+".pem")
		pub, err := keyfile.Generate(p)
		if err != nil {
			t.Fatal(err)
		}
		f.keys = append(f.keys, p)
		f.pubs = append(f.pubs, hex.EncodeToString(pub))
	}
	return f
}

// create runs 'release create' for the fixture's binaries plus extra flags
// and returns the manifest path.
func (f *releaseFixture) create(t *testing.T, extra ...string) string {
	t.Helper()
	out := filepath.Join(f.dir, "manifest.json")
	args := append([]string{"create", "--network", "devnet", "--version", "2.0.0",
		"--node", f.node, "--agent", f.agent, "--out", out}, extra...)
	if _, err := runRelease(t, args...); err != nil {
		t.Fatalf("release create: %v", err)
	}
	return out
}

func (f *releaseFixture) sign(t *testing.T, manifest string, keys ...int) string {
	t.Helper()
	var out string
	for _, k := range keys {
		var err error
		out, err = runRelease(t, "sign", "--key", f.keys[k], manifest)
		if err != nil {
			t.Fatalf("release sign: %v", err)
		}
	}
	return out
}

func TestReleaseCreateSignVerify(t *testing.T) {
	f := newReleaseFixture(t)
	manifest := f.create(t, "--distribute", f.distribute, "--schema", "2", "--migration", "account-tx-index", "--notes", "new index")

	sr, err := release.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	nodeM, _ := sim.Measure(f.node)
	m := sr.Manifest
	if m.NetworkID != "devnet" || m.Version != "2.0.0" || m.Node.MREnclave != nodeM || m.Node.ProductID != 1 || m.Agent.ProductID != 2 ||
		m.SchemaVersion != 2 || len(m.Migrations) != 1 || m.Notes != "new index" || m.Distribute == nil || len(sr.Signatures) != 0 {
		t.Fatalf("created manifest %+v", m)
	}
	if want := "file://" + filepath.Dir(f.node) + "/teeup-node"; m.Node.URL != want {
		t.Fatalf("node URL %q, want %q", m.Node.URL, want)
	}

	out := f.sign(t, manifest, 0)
	if !strings.Contains(out, "now has 1 signature\n") {
		t.Fatalf("sign output %q", out)
	}
	out = f.sign(t, manifest, 0) // again with the same key: no duplicate
	if !strings.Contains(out, "now has 1 signature\n") {
		t.Fatalf("re-sign output %q", out)
	}
	out = f.sign(t, manifest, 1)
	if !strings.Contains(out, "now has 2 signatures") || !strings.Contains(out, f.pubs[1]) {
		t.Fatalf("sign output %q", out)
	}

	keys := strings.Join(f.pubs, ",")
	out, err = runRelease(t, "verify", "--kmg-keys", keys, "--threshold", "2", manifest,
		"--node-binary", f.node, "--agent-binary", f.agent, "--distribute-binary", f.distribute)
	if err != nil {
		t.Fatalf("verify with t=2: %v", err)
	}
	if !strings.HasPrefix(out, "OK: release 2.0.0 of network devnet carries 2 signatures (threshold 2)") || !strings.Contains(out, "node binary "+f.node+" matches") {
		t.Fatalf("verify output %q", out)
	}

	_, err = runRelease(t, "verify", "--kmg-keys", keys, "--threshold", "3", manifest)
	if err == nil || !strings.Contains(err.Error(), "2 of 3 required signatures") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("verify with t=3 = %v, want a one-line error with 2 of 3 required signatures", err)
	}
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Code != 1 {
		t.Fatalf("verify failure is not exit code 1: %v", err)
	}

	// JSON, success and failure.
	out, err = runRelease(t, "verify", "--json", "--kmg-keys", keys, "--threshold", "2", manifest)
	if err != nil {
		t.Fatal(err)
	}
	var res releaseVerification
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json output %q: %v", out, err)
	}
	if !res.OK || res.Signatures != 2 || res.Threshold != 2 || res.NodeMREnclave != nodeM.String() || res.Error != "" {
		t.Fatalf("verify --json = %+v", res)
	}
	out, err = runRelease(t, "verify", "--json", "--kmg-keys", keys, "--threshold", "3", manifest)
	if err == nil {
		t.Fatal("verify --json with t=3 succeeded")
	}
	res = releaseVerification{}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("verify --json output %q: %v", out, err)
	}
	if res.OK || !strings.Contains(res.Error, "2 of 3 required signatures") {
		t.Fatalf("verify --json with t=3 = %+v", res)
	}

	// The default file:// URLs fetch, and the fetched binary verifies.
	fetched := filepath.Join(t.TempDir(), "teeup-node")
	if err := release.Fetch(context.Background(), m.Node.URL, fetched, nil); err != nil {
		t.Fatal(err)
	}
	if err := release.Fetch(context.Background(), m.Node.SigStructURL(), fetched+".sig", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := release.VerifyBinary(fetched, m.Node); err != nil {
		t.Fatalf("VerifyBinary of the fetched node: %v", err)
	}
}

func TestReleaseCreateURLBase(t *testing.T) {
	f := newReleaseFixture(t)
	manifest := f.create(t, "--url-base", "https://releases.example.com/2.0.0/", "--distribute", f.distribute)
	sr, err := release.Load(manifest)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		sr.Manifest.Node.URL:       "https://releases.example.com/2.0.0/teeup-node",
		sr.Manifest.Agent.URL:      "https://releases.example.com/2.0.0/teeup-agent",
		sr.Manifest.Distribute.URL: "https://releases.example.com/2.0.0/teeup-distribute",
	} {
		if got != want {
			t.Errorf("URL %q, want %q", got, want)
		}
	}
}

func TestReleaseCreateRejects(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, f *releaseFixture) []string // returns args after "create"
		want  string
	}{
		{"unsigned node binary", func(t *testing.T, f *releaseFixture) []string {
			mustRemove(t, f.node+".sig")
			return nil
		}, "node: describe binary: " + "" /* path follows */},
		{"unsigned agent binary", func(t *testing.T, f *releaseFixture) []string {
			mustRemove(t, f.agent+".sig")
			return nil
		}, "no signature structure"},
		{"node changed after signing", func(t *testing.T, f *releaseFixture) []string {
			if err := os.WriteFile(f.node, []byte("patched node"), 0o755); err != nil {
				t.Fatal(err)
			}
			return nil
		}, "binary changed after signing"},
		{"node signature structure corrupted", func(t *testing.T, f *releaseFixture) []string {
			raw, err := os.ReadFile(f.node + ".sig")
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 1
			mustWrite(t, f.node+".sig", raw)
			return nil
		}, "does not verify (tampered)"},
		{"same binary as node and agent", func(t *testing.T, f *releaseFixture) []string {
			return []string{"--agent", f.node}
		}, "the same MRENCLAVE"},
		{"missing distribute binary", func(t *testing.T, f *releaseFixture) []string {
			return []string{"--distribute", filepath.Join(f.dir, "missing")}
		}, "no such file"},
		{"bad version", func(t *testing.T, f *releaseFixture) []string { return []string{"--version", "2.0"} }, "want MAJOR.MINOR.PATCH"},
		{"bad network", func(t *testing.T, f *releaseFixture) []string { return []string{"--network", "Dev Net"} }, "network id"},
		{"bad url base", func(t *testing.T, f *releaseFixture) []string { return []string{"--url-base", "ftp://example.com"} }, `scheme "ftp"`},
		{"negative schema", func(t *testing.T, f *releaseFixture) []string { return []string{"--schema", "-1"} }, "negative"},
		{"bad migration", func(t *testing.T, f *releaseFixture) []string { return []string{"--migration", "a b"} }, "migration 0"},
		{"missing --version", func(t *testing.T, f *releaseFixture) []string { return []string{"--version", ""} }, "--version V is required"},
		{"missing --node", func(t *testing.T, f *releaseFixture) []string { return []string{"--node", ""} }, "--node BIN is required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newReleaseFixture(t)
			out := filepath.Join(f.dir, "manifest.json")
			args := []string{"create", "--network", "devnet", "--version", "2.0.0", "--node", f.node, "--agent", f.agent, "--out", out}
			args = append(args, tc.setup(t, f)...) // later flags win
			_, err := runRelease(t, args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("create = %v, want a one-line error containing %q", err, tc.want)
			}
			if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("a refused create wrote %s", out)
			}
		})
	}
}

func TestReleaseCreateRefusesOverwrite(t *testing.T) {
	f := newReleaseFixture(t)
	manifest := f.create(t)
	f.sign(t, manifest, 0)
	before, _ := os.ReadFile(manifest)
	_, err := runRelease(t, "create", "--network", "devnet", "--version", "2.0.1", "--node", f.node, "--agent", f.agent, "--out", manifest)
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("create over an existing file = %v, want os.ErrExist", err)
	}
	after, _ := os.ReadFile(manifest)
	if !bytes.Equal(before, after) {
		t.Fatal("a refused create changed the existing manifest")
	}
}

func TestReleaseSignRejects(t *testing.T) {
	f := newReleaseFixture(t)
	manifest := f.create(t)
	garbage := filepath.Join(f.dir, "garbage.json")
	mustWrite(t, garbage, []byte(`{"manifest":{},"extra":1}`))
	pubOnly := f.keys[0] + keyfile.PublicSuffix
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no key", []string{"sign", manifest}, "--key KEY is required"},
		{"missing key file", []string{"sign", "--key", filepath.Join(f.dir, "nokey"), manifest}, "no such file"},
		{"public key instead of private", []string{"sign", "--key", pubOnly, manifest}, "PUBLIC KEY"},
		{"missing manifest", []string{"sign", "--key", f.keys[0], filepath.Join(f.dir, "none.json")}, "no such file"},
		{"unknown field", []string{"sign", "--key", f.keys[0], garbage}, `unknown field "extra"`},
	}
	before, _ := os.ReadFile(manifest)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runRelease(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("sign = %v, want a one-line error containing %q", err, tc.want)
			}
		})
	}
	if after, _ := os.ReadFile(manifest); !bytes.Equal(before, after) {
		t.Fatal("a refused sign changed the manifest")
	}
}

func TestReleaseVerifyRejects(t *testing.T) {
	f := newReleaseFixture(t)
	manifest := f.create(t)
	f.sign(t, manifest, 0, 1)
	keys := strings.Join(f.pubs, ",")
	other := newReleaseFixture(t)

	writeGenesis := func(name, content string) string {
		p := filepath.Join(f.dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	kmgJSON := `{"keys":["` + strings.Join(f.pubs, `","`) + `"],"threshold":2}`
	goodGenesis := writeGenesis("genesis.json", `{"chain_id":"devnet","nodes":[],"kmg":`+kmgJSON+`}`)
	if _, err := runRelease(t, "verify", "--genesis", goodGenesis, manifest); err != nil {
		t.Fatalf("verify --genesis: %v", err)
	}
	otherChain := writeGenesis("other.json", `{"chain_id":"mainnet","kmg":`+kmgJSON+`}`)
	noKMG := writeGenesis("nokmg.json", `{"chain_id":"devnet"}`)
	notJSON := writeGenesis("bad.json", `chain_id: devnet`)
	strict := writeGenesis("strict.json", `{"chain_id":"devnet","kmg":{"keys":["`+f.pubs[0]+`"],"threshold":2}}`)

	edited := filepath.Join(f.dir, "edited.json")
	raw := mustRead(t, manifest)
	if !bytes.Contains(raw, []byte(`"version": "2.0.0"`)) {
		t.Fatalf("manifest layout changed: %s", raw)
	}
	mustWrite(t, edited, bytes.Replace(raw, []byte(`"version": "2.0.0"`), []byte(`"version": "2.0.1"`), 1))

	tampered := filepath.Join(f.dir, "tampered-node")
	mustWrite(t, tampered, append(mustRead(t, f.node), '!'))
	mustWrite(t, tampered+".sig", mustRead(t, f.node+".sig"))

	cases := []struct {
		name string
		args []string
		want string
	}{
		{"threshold 3", []string{"verify", "--kmg-keys", keys, "--threshold", "3", manifest}, "2 of 3 required signatures"},
		{"another group", []string{"verify", "--kmg-keys", strings.Join(other.pubs, ","), "--threshold", "1", manifest}, "which is not a member of the group"},
		{"edited after signing", []string{"verify", "--kmg-keys", keys, "--threshold", "2", edited}, "does not verify"},
		{"tampered node binary", []string{"verify", "--kmg-keys", keys, "--threshold", "2", manifest, "--node-binary", tampered}, "node: verify binary"},
		{"agent binary given as node", []string{"verify", "--kmg-keys", keys, "--threshold", "2", manifest, "--node-binary", f.agent}, "its SHA-256 is"},
		{"distribute not in release", []string{"verify", "--kmg-keys", keys, "--threshold", "2", manifest, "--distribute-binary", f.distribute}, "ships no distribute"},
		{"no group", []string{"verify", manifest}, "Key Management Group is required"},
		{"keys without threshold", []string{"verify", "--kmg-keys", keys, manifest}, "Key Management Group is required"},
		{"threshold above keys", []string{"verify", "--kmg-keys", keys, "--threshold", "4", manifest}, "threshold 4 is not between 1 and the 3 keys"},
		{"bad key hex", []string{"verify", "--kmg-keys", "abc", "--threshold", "1", manifest}, "group key 0"},
		{"genesis and keys", []string{"verify", "--genesis", goodGenesis, "--kmg-keys", keys, manifest}, "not both"},
		{"genesis of another chain", []string{"verify", "--genesis", otherChain, manifest}, `the release is for network "devnet", the genesis file for "mainnet"`},
		{"genesis without kmg", []string{"verify", "--genesis", noKMG, manifest}, "no kmg field"},
		{"genesis not JSON", []string{"verify", "--genesis", notJSON, manifest}, "read genesis"},
		{"genesis missing", []string{"verify", "--genesis", filepath.Join(f.dir, "none.json"), manifest}, "no such file"},
		{"genesis group invalid", []string{"verify", "--genesis", strict, manifest}, "threshold 2 is not between 1 and the 1 keys"},
		{"missing manifest", []string{"verify", "--kmg-keys", keys, "--threshold", "2", filepath.Join(f.dir, "none.json")}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runRelease(t, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("verify = %v, want a one-line error containing %q", err, tc.want)
			}
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != 1 {
				t.Fatalf("verify failure %v is not an exit code 1", err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustWrite(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func mustRemove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
