package release

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee/sim"
)

func TestVerifyBinary(t *testing.T) {
	signers := testKeys(2)
	signer, otherSigner := signers[0], signers[1]
	cases := []struct {
		name   string
		setup  func(t *testing.T, bin string, c *Component) // changes the file or the component after the release was made
		wantIs error
		want   string // "" means it must verify
	}{
		{name: "matches", setup: func(t *testing.T, bin string, c *Component) {}},
		{name: "tampered binary", setup: func(t *testing.T, bin string, c *Component) {
			appendTo(t, bin, "x")
		}, wantIs: ErrMismatch, want: "its SHA-256 is"},
		{name: "tampered and re-signed by the rightful signer", setup: func(t *testing.T, bin string, c *Component) {
			appendTo(t, bin, "x")
			if _, err := sim.SignBinary(bin, c.ProductID, c.SVN, signer); err != nil {
				t.Fatal(err)
			}
		}, wantIs: ErrMismatch, want: "its SHA-256 is"},
		{name: "sig from another signer", setup: func(t *testing.T, bin string, c *Component) {
			if _, err := sim.SignBinary(bin, c.ProductID, c.SVN, otherSigner); err != nil {
				t.Fatal(err)
			}
		}, wantIs: ErrMismatch, want: "signed by MRSIGNER " + sim.SignerIDOf(otherSigner.Public().(ed25519.PublicKey)).String()},
		{name: "wrong product", setup: func(t *testing.T, bin string, c *Component) {
			if _, err := sim.SignBinary(bin, c.ProductID+1, c.SVN, signer); err != nil {
				t.Fatal(err)
			}
		}, wantIs: ErrMismatch, want: "product ID is 8, the release says 7"},
		{name: "wrong svn", setup: func(t *testing.T, bin string, c *Component) {
			if _, err := sim.SignBinary(bin, c.ProductID, c.SVN-1, signer); err != nil {
				t.Fatal(err)
			}
		}, wantIs: ErrMismatch, want: "SVN is 2, the release says 3"},
		{name: "missing sig", setup: func(t *testing.T, bin string, c *Component) {
			if err := os.Remove(bin + ".sig"); err != nil {
				t.Fatal(err)
			}
		}, wantIs: sim.ErrNoSigStruct, want: "no signature structure"},
		{name: "sig of another binary", setup: func(t *testing.T, bin string, c *Component) {
			other := writeSignedBinary(t, filepath.Dir(bin), "other", "other code", signer, c.ProductID, c.SVN)
			copyFile(t, other+".sig", bin+".sig")
		}, want: "binary changed after signing"},
		{name: "corrupted sig", setup: func(t *testing.T, bin string, c *Component) {
			raw, err := os.ReadFile(bin + ".sig")
			if err != nil {
				t.Fatal(err)
			}
			raw[len(raw)-1] ^= 1
			if err := os.WriteFile(bin+".sig", raw, 0o644); err != nil {
				t.Fatal(err)
			}
		}, want: "does not verify (tampered)"},
		{name: "release sha256 differs from mrenclave", setup: func(t *testing.T, bin string, c *Component) {
			c.MREnclave = measurementOf("something else")
		}, wantIs: ErrMismatch, want: "it measures MRENCLAVE"},
		{name: "release names another binary", setup: func(t *testing.T, bin string, c *Component) {
			m := measurementOf("something else")
			c.MREnclave, c.SHA256 = m, m.String()
		}, wantIs: ErrMismatch, want: "its SHA-256 is"},
		{name: "missing binary", setup: func(t *testing.T, bin string, c *Component) {
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
		}, wantIs: os.ErrNotExist, want: "no such file"},
		{name: "directory", setup: func(t *testing.T, bin string, c *Component) {
			if err := os.Remove(bin); err != nil {
				t.Fatal(err)
			}
			if err := os.Mkdir(bin, 0o755); err != nil {
				t.Fatal(err)
			}
		}, want: "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			bin := writeSignedBinary(t, dir, "teeup-node", "node code v1", signer, 7, 3)
			c, err := ComponentFromBinary(bin, "file://"+bin)
			if err != nil {
				t.Fatalf("ComponentFromBinary: %v", err)
			}
			if c.ProductID != 7 || c.SVN != 3 || c.SignerID != sim.SignerIDOf(signer.Public().(ed25519.PublicKey)) || c.SHA256 != c.MREnclave.String() {
				t.Fatalf("ComponentFromBinary = %+v", c)
			}
			tc.setup(t, bin, &c)
			id, err := VerifyBinary(bin, c)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("VerifyBinary: %v", err)
				}
				if id.UniqueID != c.MREnclave || id.SignerID != c.SignerID || id.ProductID != 7 || id.SecurityVersion != 3 || id.Debug {
					t.Fatalf("VerifyBinary identity %v does not match %+v", id, c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("VerifyBinary = %v, want error containing %q", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("VerifyBinary = %v, want errors.Is %v", err, tc.wantIs)
			}
		})
	}
}

func TestComponentFromBinaryRejects(t *testing.T) {
	signer := testKeys(1)[0]
	cases := []struct {
		name  string
		setup func(t *testing.T, dir string) string
		url   string
		want  string
	}{
		{"unsigned binary", func(t *testing.T, dir string) string {
			p := filepath.Join(dir, "bin")
			if err := os.WriteFile(p, []byte("code"), 0o755); err != nil {
				t.Fatal(err)
			}
			return p
		}, "file:///x/bin", "no signature structure"},
		{"changed after signing", func(t *testing.T, dir string) string {
			p := writeSignedBinary(t, dir, "bin", "code", signer, 1, 1)
			appendTo(t, p, "more")
			return p
		}, "file:///x/bin", "binary changed after signing"},
		{"missing binary", func(t *testing.T, dir string) string { return filepath.Join(dir, "missing") }, "file:///x/bin", "no such file"},
		{"bad url", func(t *testing.T, dir string) string {
			return writeSignedBinary(t, dir, "bin", "code", signer, 1, 1)
		}, "ftp://x/bin", `scheme "ftp"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := tc.setup(t, t.TempDir())
			if _, err := ComponentFromBinary(p, tc.url); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ComponentFromBinary = %v, want error containing %q", err, tc.want)
			}
		})
	}
}

func TestVerifyArtifact(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "teeup-distribute")
	if err := os.WriteFile(p, []byte("distribute code"), 0o755); err != nil {
		t.Fatal(err)
	}
	a, err := ArtifactFromFile(p, "https://example.com/teeup-distribute")
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyArtifact(p, a); err != nil {
		t.Fatalf("VerifyArtifact: %v", err)
	}
	if _, err := ArtifactFromFile(p, "s3://b/k"); err == nil {
		t.Errorf("ArtifactFromFile accepted an s3 URL")
	}
	if _, err := ArtifactFromFile(filepath.Join(dir, "missing"), "https://example.com/x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ArtifactFromFile of a missing file = %v", err)
	}
	appendTo(t, p, "!")
	if err := VerifyArtifact(p, a); !errors.Is(err, ErrMismatch) {
		t.Fatalf("VerifyArtifact of a tampered file = %v, want ErrMismatch", err)
	}
	if err := VerifyArtifact(filepath.Join(dir, "missing"), a); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("VerifyArtifact of a missing file = %v, want os.ErrNotExist", err)
	}
}

func appendTo(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	raw, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, raw, 0o644); err != nil {
		t.Fatal(err)
	}
}
