//go:build !ego

package boot_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/boot"
	"github.com/teeup/teeup/tee/sim"
)

type env struct {
	platformDir string
	dir         string
	signerKey   string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{platformDir: filepath.Join(dir, "platform"), dir: dir, signerKey: filepath.Join(dir, "signer.key")}
	if _, err := sim.InitPlatform(e.platformDir, ca); err != nil {
		t.Fatal(err)
	}
	if _, err := keyfile.Generate(e.signerKey); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) binary(t *testing.T, name string, signed bool) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte("enclave program "+name), 0o755); err != nil {
		t.Fatal(err)
	}
	if signed {
		key, err := keyfile.ReadPrivate(e.signerKey)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sim.SignBinary(p, 3, 2, key); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func measure(t *testing.T, path string) tee.Measurement {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

var warningLines = []string{"teeup-test is running in SIMULATION MODE", "NO HARDWARE PROTECTION", "FORGE ATTESTATION", "READ SEALED KEYS"}

func TestOpenSigned(t *testing.T) {
	e := newEnv(t)
	bin := e.binary(t, "node", true)
	var w bytes.Buffer
	p, err := boot.Open(boot.Options{Program: "teeup-test", PlatformDir: e.platformDir, Binary: bin, Warnings: &w})
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	id := p.Enclave.Identity()
	if id.UniqueID != measure(t, bin) || id.ProductID != 3 || id.SecurityVersion != 2 || id.Debug || id.SignerID.IsZero() {
		t.Fatalf("identity %+v: want the signed identity of %s", id, bin)
	}
	if !p.Simulated || !p.Enclave.Simulated() || p.Name != "simulation (tee/sim)" {
		t.Fatalf("platform simulated=%t name=%q", p.Simulated, p.Name)
	}
	// The verifier accepts the enclave's own quotes (pinned to the platform's root).
	q, err := p.Enclave.Quote(tee.HashReportData("boot test"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := p.Verifier.VerifyQuote(q)
	if err != nil || r.Identity != id {
		t.Fatalf("VerifyQuote = %+v, %v", r, err)
	}
	out := w.String()
	for _, want := range append(warningLines, e.platformDir) {
		if !strings.Contains(out, want) {
			t.Errorf("warning does not contain %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "DEBUG") {
		t.Errorf("non-debug start printed a DEBUG line:\n%s", out)
	}
	if n := strings.Count(out, "\n"); n < 5 {
		t.Errorf("warning has %d lines; it must be loud:\n%s", n, out)
	}
}

func TestOpenDebugUnsigned(t *testing.T) {
	e := newEnv(t)
	bin := e.binary(t, "node", false)
	var w bytes.Buffer
	p, err := boot.Open(boot.Options{Program: "teeup-test", PlatformDir: e.platformDir, Binary: bin, Debug: true, Warnings: &w})
	if err != nil {
		t.Fatalf("Open debug: %v", err)
	}
	if want := (tee.Identity{UniqueID: measure(t, bin), Debug: true}); p.Enclave.Identity() != want {
		t.Fatalf("identity %+v, want %+v", p.Enclave.Identity(), want)
	}
	if !strings.Contains(w.String(), "DEBUG") || !strings.Contains(w.String(), "marked Debug") {
		t.Fatalf("no DEBUG warning:\n%s", w.String())
	}
	for _, want := range warningLines {
		if !strings.Contains(w.String(), want) {
			t.Errorf("warning does not contain %q", want)
		}
	}
}

func TestOpenOwnExecutable(t *testing.T) {
	e := newEnv(t)
	exe, err := os.Executable()
	if err != nil {
		t.Skipf("os.Executable: %v", err)
	}
	// The test binary has no signature structure: refused without Debug.
	_, err = boot.Open(boot.Options{Program: "teeup-test", PlatformDir: e.platformDir, Warnings: io.Discard})
	if !errors.Is(err, sim.ErrNoSigStruct) {
		t.Fatalf("Open of the unsigned test binary: %v, want ErrNoSigStruct", err)
	}
	p, err := boot.Open(boot.Options{Program: "teeup-test", PlatformDir: e.platformDir, Debug: true, Warnings: io.Discard})
	if err != nil {
		t.Fatalf("Open debug of own executable: %v", err)
	}
	if p.Enclave.Identity().UniqueID != measure(t, exe) {
		t.Fatal("Binary \"\" did not measure the running executable")
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("stderr closed") }

func TestOpenRejects(t *testing.T) {
	e := newEnv(t)
	unsigned := e.binary(t, "unsigned", false)
	changed := e.binary(t, "changed", true)
	if err := os.WriteFile(changed, []byte("patched after signing"), 0o755); err != nil {
		t.Fatal(err)
	}
	tampered := e.binary(t, "tampered", true)
	sig, err := os.ReadFile(tampered + sim.SigStructSuffix)
	if err != nil {
		t.Fatal(err)
	}
	sig[len(sig)-1] ^= 1
	if err := os.WriteFile(tampered+sim.SigStructSuffix, sig, 0o600); err != nil {
		t.Fatal(err)
	}
	signed := e.binary(t, "signed", true)
	emptyDir := t.TempDir()

	const hint = "--enclave-debug"
	cases := []struct {
		name     string
		opts     boot.Options
		wantIs   error
		want     []string
		noHint   bool
		noOutput bool // nothing printed (the writer fails)
	}{
		{name: "no platform dir", opts: boot.Options{Binary: signed},
			want: []string{"teeup-test: --platform DIR or TEEUP_PLATFORM is required in simulation mode"}, noHint: true},
		{name: "no platform dir, debug", opts: boot.Options{Binary: signed, Debug: true},
			want: []string{"--platform DIR or TEEUP_PLATFORM is required in simulation mode"}, noHint: true},
		{name: "platform dir without platform", opts: boot.Options{PlatformDir: emptyDir, Binary: signed},
			wantIs: os.ErrNotExist, want: []string{"run 'teeup platform init"}, noHint: true},
		{name: "unsigned binary", opts: boot.Options{PlatformDir: e.platformDir, Binary: unsigned},
			wantIs: sim.ErrNoSigStruct, want: []string{"refusing to start as an enclave", "no signature structure"}},
		{name: "binary changed after signing", opts: boot.Options{PlatformDir: e.platformDir, Binary: changed},
			want: []string{"refusing to start as an enclave", "binary changed after signing"}},
		{name: "tampered signature structure", opts: boot.Options{PlatformDir: e.platformDir, Binary: tampered},
			want: []string{"refusing to start as an enclave", "does not verify"}},
		{name: "missing binary", opts: boot.Options{PlatformDir: e.platformDir, Binary: filepath.Join(e.dir, "absent")},
			wantIs: os.ErrNotExist, want: []string{"measure"}, noHint: true},
		{name: "missing binary, debug", opts: boot.Options{PlatformDir: e.platformDir, Binary: filepath.Join(e.dir, "absent"), Debug: true},
			wantIs: os.ErrNotExist, want: []string{"measure"}, noHint: true},
		{name: "warning cannot be printed", opts: boot.Options{PlatformDir: e.platformDir, Binary: signed, Warnings: failingWriter{}},
			want: []string{"print simulation warning: stderr closed"}, noHint: true, noOutput: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var w bytes.Buffer
			opts := tc.opts
			opts.Program = "teeup-test"
			if opts.Warnings == nil {
				opts.Warnings = &w
			}
			p, err := boot.Open(opts)
			if err == nil {
				t.Fatalf("Open accepted it: %+v", p.Enclave.Identity())
			}
			if p != nil {
				t.Fatal("refused Open returned a platform")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Fatalf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), hint) == tc.noHint {
				t.Fatalf("error %q: want the --enclave-debug hint: %t", err, !tc.noHint)
			}
			if !strings.HasPrefix(err.Error(), "teeup-test: ") {
				t.Fatalf("error %q does not name the program", err)
			}
			// The warning comes first, whatever happens next.
			if !tc.noOutput && !strings.Contains(w.String(), "SIMULATION MODE") {
				t.Fatalf("no simulation warning before the error:\n%s", w.String())
			}
		})
	}
}

// TestOpenDefaultsToStderr checks that a nil Warnings writer means
// os.Stderr. It swaps os.Stderr, so it must not run in parallel.
func TestOpenDefaultsToStderr(t *testing.T) {
	e := newEnv(t)
	bin := e.binary(t, "node", true)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	saved := os.Stderr
	os.Stderr = w
	_, openErr := boot.Open(boot.Options{PlatformDir: e.platformDir, Binary: bin})
	os.Stderr = saved
	w.Close()
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if openErr != nil {
		t.Fatalf("Open: %v", openErr)
	}
	if !strings.Contains(string(out), "SIMULATION MODE") || !strings.Contains(string(out), "enclave program") {
		t.Fatalf("stderr did not get the warning (with the default program name):\n%s", out)
	}
}

// VerifyBinary and NewQuoteVerifier are the simulated platform's: a signed
// binary measures as its SHA-256 with the signer, product and SVN of its
// signature structure; an unsigned or changed one does not verify; quotes
// verify against the pinned simulated root.
func TestMeasureAndVerifyQuotesThroughBoot(t *testing.T) {
	e := newEnv(t)
	bin := e.binary(t, "signed", true)
	id, err := boot.VerifyBinary(bin)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if id.UniqueID != tee.Measurement(sha256.Sum256(raw)) || id.ProductID != 3 || id.SecurityVersion != 2 || id.Debug {
		t.Fatalf("identity %+v", id)
	}
	if _, err := boot.VerifyBinary(e.binary(t, "unsigned", false)); err == nil {
		t.Fatal("an unsigned binary verified")
	}
	if err := os.WriteFile(bin, append(raw, '!'), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := boot.VerifyBinary(bin); err == nil {
		t.Fatal("a binary changed after signing verified")
	}

	p, err := boot.Open(boot.Options{Program: "teeup-test", PlatformDir: e.platformDir, Binary: e.binary(t, "quoted", true), Warnings: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	root, err := os.ReadFile(filepath.Join(e.platformDir, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	qv, err := boot.NewQuoteVerifier(root)
	if err != nil {
		t.Fatal(err)
	}
	q, err := p.Enclave.Quote(tee.ReportData{7})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := qv.VerifyQuote(q)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Identity.UniqueID != p.Enclave.Identity().UniqueID || rep.Data != (tee.ReportData{7}) {
		t.Fatalf("verified quote %+v", rep)
	}
	if _, err := boot.NewQuoteVerifier([]byte("not a certificate")); err == nil {
		t.Fatal("a malformed root was accepted")
	}
}
