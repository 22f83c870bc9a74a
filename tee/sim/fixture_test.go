package sim_test

import (
	"bytes"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// fixture is a simulated network in a temporary directory: a root CA with
// two platforms, and a second, unrelated root CA with one platform.
type fixture struct {
	dir      string
	caDir    string
	ca       *sim.CA
	p1, p2   *sim.Platform
	p1Dir    string
	otherCA  *sim.CA
	foreign  *sim.Platform // chained to otherCA
	signer   ed25519.PrivateKey
	signer2  ed25519.PrivateKey
	idA, idB tee.Identity
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, caDir: filepath.Join(dir, "ca"), p1Dir: filepath.Join(dir, "p1")}
	var err error
	if f.ca, err = sim.InitCA(f.caDir); err != nil {
		t.Fatal(err)
	}
	if f.p1, err = sim.InitPlatform(f.p1Dir, f.ca); err != nil {
		t.Fatal(err)
	}
	if f.p2, err = sim.InitPlatform(filepath.Join(dir, "p2"), f.ca); err != nil {
		t.Fatal(err)
	}
	if f.otherCA, err = sim.InitCA(filepath.Join(dir, "ca2")); err != nil {
		t.Fatal(err)
	}
	if f.foreign, err = sim.InitPlatform(filepath.Join(dir, "foreign"), f.otherCA); err != nil {
		t.Fatal(err)
	}
	f.signer = genKey(t, filepath.Join(dir, "keys", "signer.key"))
	f.signer2 = genKey(t, filepath.Join(dir, "keys", "signer2.key"))
	f.idA = tee.Identity{UniqueID: measurementOf([]byte("enclave A")), SignerID: sim.SignerIDOf(f.signer.Public().(ed25519.PublicKey)), ProductID: 1, SecurityVersion: 1}
	f.idB = tee.Identity{UniqueID: measurementOf([]byte("enclave B")), SignerID: f.idA.SignerID, ProductID: 1, SecurityVersion: 1}
	return f
}

// genKey creates a signer key with keyfile.Generate and reads it back.
func genKey(t testing.TB, path string) ed25519.PrivateKey {
	t.Helper()
	if _, err := keyfile.Generate(path); err != nil {
		t.Fatal(err)
	}
	k, err := keyfile.ReadPrivate(path)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func measurementOf(b []byte) tee.Measurement {
	var m tee.Measurement
	copy(m[:], b)
	for i := len(b); i < len(m); i++ {
		m[i] = byte(i)
	}
	return m
}

// writeBinary writes a small "enclave binary" and returns its path.
func writeBinary(t testing.TB, dir, name string, content []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, content, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func reportData(t testing.TB, s string) tee.ReportData {
	t.Helper()
	d, err := tee.NewReportData([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func targetInfo(t testing.TB, e tee.Enclave) []byte {
	t.Helper()
	ti, err := e.TargetInfo()
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// flipAt returns a copy of b with the byte at off (negative: from the end)
// XORed with 0x01.
func flipAt(b []byte, off int) []byte {
	b = bytes.Clone(b)
	if off < 0 {
		off += len(b)
	}
	b[off] ^= 0x01
	return b
}

// setAt returns a copy of b with the byte at off set to v.
func setAt(b []byte, off int, v byte) []byte {
	b = bytes.Clone(b)
	b[off] = v
	return b
}

func wantErr(t *testing.T, err error, want string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	if !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not contain %q", err, want)
	}
}
