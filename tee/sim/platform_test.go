package sim_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/tee/sim"
)

var platformFiles = []string{sim.SecretFile, sim.AttestationKeyFile, sim.AttestationCrtFile, sim.RootCertFile}

func TestPlatformFileModes(t *testing.T) {
	f := newFixture(t)
	for _, name := range platformFiles {
		st, err := os.Stat(filepath.Join(f.p1Dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	for _, name := range []string{sim.CAKeyFile, sim.RootCertFile} {
		st, err := os.Stat(filepath.Join(f.caDir, name))
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("CA %s mode %v, want 0600", name, st.Mode().Perm())
		}
	}
	for _, d := range []string{f.p1Dir, f.caDir} {
		st, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o700 {
			t.Errorf("%s mode %v, want 0700", d, st.Mode().Perm())
		}
	}
	// No temporary files are left behind.
	entries, err := os.ReadDir(f.p1Dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(platformFiles) {
		names := make([]string, len(entries))
		for i, e := range entries {
			names[i] = e.Name()
		}
		t.Errorf("platform dir holds %v, want exactly %v", names, platformFiles)
	}
	if st, err := os.Stat(filepath.Join(f.p1Dir, sim.SecretFile)); err != nil || st.Size() != 32 {
		t.Errorf("secret: %v, size want 32", err)
	}
}

func TestPlatformOpenMatchesInit(t *testing.T) {
	f := newFixture(t)
	p, err := sim.OpenPlatform(f.p1Dir)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != f.p1.ID() || len(p.ID()) != 16 || p.Dir() != f.p1Dir {
		t.Fatalf("reopened platform id %q dir %q, want %q %q", p.ID(), p.Dir(), f.p1.ID(), f.p1Dir)
	}
	if p.ID() == f.p2.ID() {
		t.Fatal("two platforms share an id")
	}
	if !p.RootCertificate().Equal(f.ca.Certificate()) {
		t.Fatal("platform root differs from the CA certificate")
	}
}

func TestInitPlatformRefusesOverwrite(t *testing.T) {
	f := newFixture(t)
	before := readFiles(t, f.p1Dir)
	for _, ca := range []*sim.CA{f.ca, f.otherCA} {
		p, err := sim.InitPlatform(f.p1Dir, ca)
		wantErr(t, err, "a platform already exists there")
		if p != nil {
			t.Fatal("refused InitPlatform returned a platform")
		}
	}
	if after := readFiles(t, f.p1Dir); !equalFiles(before, after) {
		t.Fatal("a refused InitPlatform changed the platform files")
	}
	p, err := sim.OpenPlatform(f.p1Dir)
	if err != nil || p.ID() != f.p1.ID() {
		t.Fatalf("platform after refused re-init: %v", err)
	}
}

func TestInitCARefusesOverwrite(t *testing.T) {
	f := newFixture(t)
	before := readFiles(t, f.caDir)
	ca, err := sim.InitCA(f.caDir)
	wantErr(t, err, "root.key")
	if !errors.Is(err, os.ErrExist) {
		t.Fatalf("error %q is not os.ErrExist", err)
	}
	if ca != nil {
		t.Fatal("refused InitCA returned a CA")
	}
	if after := readFiles(t, f.caDir); !equalFiles(before, after) {
		t.Fatal("a refused InitCA changed the CA files")
	}
	// A root.crt alone (a CA whose key was moved offline) is not overwritten either.
	crtOnly := t.TempDir()
	if err := os.Chmod(crtOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(f.caDir, sim.RootCertFile), filepath.Join(crtOnly, sim.RootCertFile))
	if _, err := sim.InitCA(crtOnly); !errors.Is(err, os.ErrExist) {
		t.Fatalf("InitCA over an existing root.crt: %v, want os.ErrExist", err)
	}
}

func TestOpenCA(t *testing.T) {
	f := newFixture(t)
	ca, err := sim.OpenCA(f.caDir)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Certificate().Equal(f.ca.Certificate()) {
		t.Fatal("OpenCA returned another certificate")
	}
	again, err := sim.OpenOrInitCA(f.caDir)
	if err != nil || !again.Certificate().Equal(f.ca.Certificate()) {
		t.Fatalf("OpenOrInitCA on an existing CA: %v", err)
	}
	fresh := filepath.Join(t.TempDir(), "new")
	created, err := sim.OpenOrInitCA(fresh)
	if err != nil || created.Certificate().Equal(f.ca.Certificate()) {
		t.Fatalf("OpenOrInitCA on an empty dir: %v", err)
	}
	// A platform certified by an opened CA chains to it.
	p, err := sim.InitPlatform(filepath.Join(t.TempDir(), "p"), ca)
	if err != nil {
		t.Fatal(err)
	}
	q, err := p.NewEnclave(f.idA).Quote(reportData(t, "x"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p1.Verifier().VerifyQuote(q); err != nil {
		t.Fatalf("quote from a platform certified by the reopened CA: %v", err)
	}

	mismatched := t.TempDir()
	copyFile(t, filepath.Join(f.caDir, sim.RootCertFile), filepath.Join(mismatched, sim.RootCertFile))
	copyFile(t, filepath.Join(f.dir, "ca2", sim.CAKeyFile), filepath.Join(mismatched, sim.CAKeyFile))
	missingCrt := t.TempDir()
	copyFile(t, filepath.Join(f.caDir, sim.CAKeyFile), filepath.Join(missingCrt, sim.CAKeyFile))
	cases := []struct {
		name, dir, want string
	}{
		{"empty dir", t.TempDir(), "read key"},
		{"key of another CA", mismatched, "root.key does not belong to root.crt"},
		{"no root.crt", missingCrt, "read certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ca, err := sim.OpenCA(tc.dir)
			wantErr(t, err, tc.want)
			if ca != nil {
				t.Fatal("refused OpenCA returned a CA")
			}
		})
	}
}

func TestOpenPlatformRejects(t *testing.T) {
	f := newFixture(t)
	p2Dir := f.p2.Dir()
	foreignDir := f.foreign.Dir()
	signerKey := filepath.Join(f.dir, "keys", "signer.key") // an ed25519 PKCS #8 key

	cases := []struct {
		name   string
		setup  func(dir string) // applied to a copy of p1
		wantIs error
		want   string
	}{
		{name: "missing directory", setup: func(dir string) { must(t, os.RemoveAll(dir)) },
			wantIs: os.ErrNotExist, want: "run 'teeup platform init"},
		{name: "missing secret", setup: func(dir string) { must(t, os.Remove(filepath.Join(dir, sim.SecretFile))) },
			wantIs: os.ErrNotExist, want: "run 'teeup platform init"},
		{name: "short secret", setup: func(dir string) { writeFile(t, dir, sim.SecretFile, make([]byte, 31)) },
			want: "secret is 31 bytes, want 32"},
		{name: "long secret", setup: func(dir string) { writeFile(t, dir, sim.SecretFile, make([]byte, 33)) },
			want: "secret is 33 bytes, want 32"},
		{name: "missing attestation key", setup: func(dir string) { must(t, os.Remove(filepath.Join(dir, sim.AttestationKeyFile))) },
			wantIs: os.ErrNotExist, want: "read key"},
		{name: "attestation key of another platform", setup: func(dir string) { copyFromDir(t, p2Dir, dir, sim.AttestationKeyFile) },
			want: "attestation.key does not belong to attestation.crt"},
		{name: "attestation cert of another platform", setup: func(dir string) { copyFromDir(t, p2Dir, dir, sim.AttestationCrtFile) },
			want: "attestation.key does not belong to attestation.crt"},
		{name: "key and cert from a platform of another root", setup: func(dir string) {
			copyFromDir(t, foreignDir, dir, sim.AttestationKeyFile)
			copyFromDir(t, foreignDir, dir, sim.AttestationCrtFile)
		}, want: "attestation certificate is not issued by root.crt"},
		{name: "root.crt of another CA", setup: func(dir string) { copyFromDir(t, foreignDir, dir, sim.RootCertFile) },
			want: "attestation certificate is not issued by root.crt"},
		{name: "attestation cert as root", setup: func(dir string) {
			copyFile(t, filepath.Join(dir, sim.AttestationCrtFile), filepath.Join(dir, sim.RootCertFile))
		},
			want: "attestation certificate is not issued by root.crt"},
		{name: "garbage attestation cert", setup: func(dir string) { writeFile(t, dir, sim.AttestationCrtFile, []byte("not a cert")) },
			want: "no PEM CERTIFICATE block"},
		{name: "attestation cert holds a key", setup: func(dir string) {
			copyFile(t, filepath.Join(dir, sim.AttestationKeyFile), filepath.Join(dir, sim.AttestationCrtFile))
		},
			want: "no PEM CERTIFICATE block"},
		{name: "missing root.crt", setup: func(dir string) { must(t, os.Remove(filepath.Join(dir, sim.RootCertFile))) },
			wantIs: os.ErrNotExist, want: "read certificate"},
		{name: "garbage attestation key", setup: func(dir string) { writeFile(t, dir, sim.AttestationKeyFile, []byte("-----BEGIN NOTHING-----")) },
			want: "no PEM PRIVATE KEY block"},
		{name: "ed25519 attestation key", setup: func(dir string) { copyFile(t, signerKey, filepath.Join(dir, sim.AttestationKeyFile)) },
			want: "is not an ECDSA key"},
		{name: "corrupt attestation key DER", setup: func(dir string) {
			writeFile(t, dir, sim.AttestationKeyFile, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
		}, want: "read key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "p")
			copyDir(t, f.p1Dir, dir)
			tc.setup(dir)
			before := readFiles(t, dir)
			p, err := sim.OpenPlatform(dir)
			wantErr(t, err, tc.want)
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if p != nil {
				t.Fatal("refused OpenPlatform returned a platform")
			}
			if after := readFiles(t, dir); !equalFiles(before, after) {
				t.Fatal("OpenPlatform changed the platform files")
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeFile(t testing.TB, dir, name string, data []byte) {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
}

func copyFile(t testing.TB, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	must(t, err)
	must(t, os.WriteFile(dst, b, 0o600))
}

func copyFromDir(t testing.TB, srcDir, dstDir, name string) {
	t.Helper()
	copyFile(t, filepath.Join(srcDir, name), filepath.Join(dstDir, name))
}

func copyDir(t testing.TB, src, dst string) {
	t.Helper()
	must(t, os.MkdirAll(dst, 0o700))
	entries, err := os.ReadDir(src)
	must(t, err)
	for _, e := range entries {
		copyFile(t, filepath.Join(src, e.Name()), filepath.Join(dst, e.Name()))
	}
}

// readFiles returns the contents of the regular files in dir by name; a
// missing dir reads as empty.
func readFiles(t testing.TB, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	must(t, err)
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		must(t, err)
		out[e.Name()] = b
	}
	return out
}

func equalFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

// A platform or CA directory that already exists with group or other
// access is refused, and nothing is written into it.
func TestInitRefusesSharedDirectory(t *testing.T) {
	f := newFixture(t)
	for _, init := range []struct {
		name string
		run  func(dir string) error
	}{
		{"platform", func(dir string) error { _, err := sim.InitPlatform(dir, f.ca); return err }},
		{"CA", func(dir string) error { _, err := sim.InitCA(dir); return err }},
	} {
		t.Run(init.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "shared")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := init.run(dir); !errors.Is(err, fsutil.ErrNotPrivate) {
				t.Fatalf("init in a 0755 directory: %v, want fsutil.ErrNotPrivate", err)
			}
			if ents, err := os.ReadDir(dir); err != nil || len(ents) != 0 {
				t.Fatalf("the refused directory holds %d entries (%v)", len(ents), err)
			}
		})
	}
	// A new directory is created owner-only.
	dir := filepath.Join(t.TempDir(), "new", "platform")
	if _, err := sim.InitPlatform(dir, f.ca); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("new platform directory: %v %v, want mode 0700", fi.Mode(), err)
	}
}
