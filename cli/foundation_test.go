package cli

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// run invokes the CLI and returns stdout, stderr and the exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), code
}

func TestFoundationCommands(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "enclave-bin")
	if err := os.WriteFile(bin, []byte("pretend enclave code"), 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Join(dir, "signer.key")

	out, _, code := run(t, "keys", "gen", "--out", key)
	if code != 0 || len(strings.TrimSpace(out)) != 64 {
		t.Fatalf("keys gen: %q, exit %d", out, code)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, %v", fi.Mode(), err)
	}

	out, _, code = run(t, "enclave", "measure", bin)
	sum := sha256.Sum256([]byte("pretend enclave code"))
	if code != 0 || strings.TrimSpace(out) != hex.EncodeToString(sum[:]) {
		t.Fatalf("measure = %q, want sha256sum %x", out, sum)
	}

	if _, _, code = run(t, "enclave", "sign", "--key", key, "--product-id", "7", "--svn", "3", bin); code != 0 {
		t.Fatal("sign failed")
	}
	out, _, code = run(t, "enclave", "inspect", "--json", bin)
	var in enclaveInspection
	if code != 0 || json.Unmarshal([]byte(out), &in) != nil || !in.SignatureValid || !in.MatchesBinary || *in.ProductID != 7 || *in.SecurityVersion != 3 {
		t.Fatalf("inspect = %s (exit %d)", out, code)
	}

	// A changed binary: inspect reports it and exits 1.
	if err := os.WriteFile(bin, []byte("changed enclave code"), 0o755); err != nil {
		t.Fatal(err)
	}
	_, errOut, code := run(t, "enclave", "inspect", bin)
	if code != 1 || !strings.Contains(errOut, "binary changed after signing") {
		t.Fatalf("inspect(changed) exit %d: %s", code, errOut)
	}

	plat := filepath.Join(dir, "host1")
	if out, _, code = run(t, "platform", "init", plat, "--ca", filepath.Join(dir, "ca")); code != 0 || !strings.Contains(out, "created") {
		t.Fatalf("platform init: %q exit %d", out, code)
	}
	for _, f := range []string{"secret", "attestation.key", "attestation.crt", "root.crt"} {
		if fi, err := os.Stat(filepath.Join(plat, f)); err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, fi, err)
		}
	}
}

func TestFoundationCommandErrors(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "k.key")
	if _, _, code := run(t, "keys", "gen", "--out", existing); code != 0 {
		t.Fatal("keys gen failed")
	}
	bin := filepath.Join(dir, "b")
	if err := os.WriteFile(bin, []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	plat := filepath.Join(dir, "p")
	if _, _, code := run(t, "platform", "init", plat); code != 0 {
		t.Fatal("platform init failed")
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"keys gen without --out", []string{"keys", "gen"}, "--out FILE is required"},
		{"keys gen overwrite", []string{"keys", "gen", "--out", existing}, "refusing to overwrite"},
		{"measure missing", []string{"enclave", "measure", filepath.Join(dir, "nope")}, "no such file"},
		{"sign without key", []string{"enclave", "sign", "--product-id", "1", "--svn", "1", bin}, "--key KEY is required"},
		{"sign product out of range", []string{"enclave", "sign", "--key", existing, "--product-id", "70000", "--svn", "1", bin}, "between 0 and 65535"},
		{"sign svn not a number", []string{"enclave", "sign", "--key", existing, "--product-id", "1", "--svn", "x", bin}, "--svn"},
		{"sign with a public key", []string{"enclave", "sign", "--key", existing + ".pub", "--product-id", "1", "--svn", "1", bin}, "PRIVATE KEY"},
		{"inspect unsigned", []string{"enclave", "inspect", bin}, "no signature structure"},
		{"platform init twice", []string{"platform", "init", plat}, "already exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, code := run(t, tt.args...)
			if code == 0 {
				t.Fatal("succeeded")
			}
			if !strings.Contains(errOut, tt.want) {
				t.Fatalf("stderr %q lacks %q", errOut, tt.want)
			}
			if n := strings.Count(strings.TrimSpace(errOut), "\n"); n > 0 && !strings.Contains(tt.name, "inspect") {
				t.Fatalf("error is %d lines, want one: %q", n+1, errOut)
			}
		})
	}
}
