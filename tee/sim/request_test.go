package sim_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee/sim"
)

// requestFixture is a platform that requested its certificate from the
// fixture's CA, pinning its root.
type requestFixture struct {
	*fixture
	dir string
	csr []byte
}

func newRequestFixture(t testing.TB) *requestFixture {
	t.Helper()
	f := newFixture(t)
	dir := filepath.Join(f.dir, "requesting")
	csr, err := sim.RequestPlatform(dir, f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	return &requestFixture{fixture: f, dir: dir, csr: csr}
}

func TestPlatformByRequest(t *testing.T) {
	f := newRequestFixture(t)
	pending := []string{sim.SecretFile, sim.AttestationKeyFile, sim.RootCertFile, sim.AttestationCSRFile}
	files := readFiles(t, f.dir)
	if len(files) != len(pending) {
		t.Fatalf("pending platform holds %d files, want %v", len(files), pending)
	}
	for _, name := range pending {
		st, err := os.Stat(filepath.Join(f.dir, name))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, mode want 0600", name, err)
		}
	}
	if !bytes.Equal(files[sim.AttestationCSRFile], f.csr) {
		t.Fatal("RequestPlatform returned another request than it stored")
	}
	// The request carries neither the secret nor the attestation private key.
	if bytes.Contains(f.csr, files[sim.SecretFile]) {
		t.Fatal("the request contains the platform secret")
	}
	blk, _ := pem.Decode(files[sim.AttestationKeyFile])
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	d := k.(*ecdsa.PrivateKey).D.Bytes()
	if der, _ := pem.Decode(f.csr); bytes.Contains(der.Bytes, d) {
		t.Fatal("the request contains the attestation private key")
	}

	// Until the certificate is installed the platform cannot be opened.
	p, err := sim.OpenPlatform(f.dir)
	if !errors.Is(err, sim.ErrPlatformPending) || p != nil {
		t.Fatalf("OpenPlatform of a pending platform: %v, want ErrPlatformPending", err)
	}
	wantErr(t, err, "platform install-cert")
	if csr, ok, err := sim.PendingRequest(f.dir); err != nil || !ok || !bytes.Equal(csr, f.csr) {
		t.Fatalf("PendingRequest = %v, %v", ok, err)
	}

	certPEM, req, err := f.ca.CertifyRequest(f.csr)
	if err != nil {
		t.Fatal(err)
	}
	p, err = sim.InstallCertificate(f.dir, certPEM)
	if err != nil {
		t.Fatal(err)
	}
	if p.ID() != req.PlatformID {
		t.Fatalf("platform id %s, request named %s", p.ID(), req.PlatformID)
	}
	// A certified platform holds exactly the files of one made by InitPlatform.
	if got := readFiles(t, f.dir); len(got) != len(platformFiles) || got[sim.AttestationCSRFile] != nil {
		t.Fatalf("certified platform holds %d files, want %v", len(got), platformFiles)
	}
	if _, ok, _ := sim.PendingRequest(f.dir); ok {
		t.Fatal("a certified platform still reports a pending request")
	}
	reopened, err := sim.OpenPlatform(f.dir)
	if err != nil || reopened.ID() != p.ID() {
		t.Fatalf("reopen: %v", err)
	}
	// Its quotes verify for every platform pinning the same root, and not
	// for one pinning another root.
	q, err := reopened.NewEnclave(f.idA).Quote(reportData(t, "by request"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.p1.Verifier().VerifyQuote(q); err != nil {
		t.Fatalf("quote of a platform certified by request: %v", err)
	}
	if _, err := f.foreign.Verifier().VerifyQuote(q); err == nil {
		t.Fatal("a verifier pinning another root accepted the quote")
	}

	// Installing the same certificate again is a no-op; another one is refused.
	before := readFiles(t, f.dir)
	if _, err := sim.InstallCertificate(f.dir, certPEM); err != nil {
		t.Fatalf("installing the same certificate again: %v", err)
	}
	again, _, err := f.ca.CertifyRequest(f.csr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.InstallCertificate(f.dir, again); !errors.Is(err, os.ErrExist) {
		t.Fatalf("installing another certificate over one: %v, want os.ErrExist", err)
	}
	if !equalFiles(before, readFiles(t, f.dir)) {
		t.Fatal("a refused install changed the platform")
	}
	// The platform secret is never replaced.
	for _, init := range []func() error{
		func() error { _, err := sim.RequestPlatform(f.dir, f.ca.Certificate()); return err },
		func() error { _, err := sim.InitPlatform(f.dir, f.ca); return err },
	} {
		if err := init(); !errors.Is(err, os.ErrExist) {
			t.Fatalf("re-init over a platform: %v, want os.ErrExist", err)
		}
	}
	if !equalFiles(before, readFiles(t, f.dir)) {
		t.Fatal("a refused re-init changed the platform")
	}
}

func TestRequestPlatformRefuses(t *testing.T) {
	f := newRequestFixture(t)
	before := readFiles(t, f.dir)
	if _, err := sim.RequestPlatform(f.dir, f.ca.Certificate()); !errors.Is(err, os.ErrExist) {
		t.Fatalf("RequestPlatform over a pending platform: %v", err)
	}
	if !equalFiles(before, readFiles(t, f.dir)) {
		t.Fatal("refused RequestPlatform changed the files")
	}
	// Pinning a non-CA certificate (an attestation certificate) is refused.
	att, err := sim.ReadCertificate(filepath.Join(f.p1Dir, sim.AttestationCrtFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sim.RequestPlatform(filepath.Join(t.TempDir(), "p"), att); err == nil {
		t.Fatal("RequestPlatform pinned a non-CA certificate")
	}
	if _, err := sim.RequestPlatform(filepath.Join(t.TempDir(), "p"), nil); err == nil {
		t.Fatal("RequestPlatform without a root")
	}
}

// csrPEM builds a certificate request with the template, signed by key.
func csrPEM(t testing.TB, tmpl *x509.CertificateRequest, key any) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// pointOf returns the uncompressed encoding of an ECDSA public key.
func pointOf(t testing.TB, k *ecdsa.PublicKey) []byte {
	t.Helper()
	e, err := k.ECDH()
	if err != nil {
		t.Fatal(err)
	}
	return e.Bytes()
}

// reencode applies change to the DER inside a PEM block.
func reencode(t testing.TB, p []byte, change func([]byte) []byte) []byte {
	t.Helper()
	blk, _ := pem.Decode(p)
	if blk == nil {
		t.Fatal("no PEM")
	}
	return pem.EncodeToMemory(&pem.Block{Type: blk.Type, Bytes: change(bytes.Clone(blk.Bytes))})
}

func TestParseRequestRejects(t *testing.T) {
	f := newRequestFixture(t)
	good, err := sim.ParseRequest(f.csr)
	if err != nil {
		t.Fatal(err)
	}
	cn := pkix.Name{CommonName: "teeup simulated platform " + good.PlatformID}
	keyA, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	keyB, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	byA := csrPEM(t, &x509.CertificateRequest{Subject: cn}, keyA)
	// The request names key B but is signed by key A.
	signedByOther := reencode(t, byA, func(der []byte) []byte {
		return bytes.Replace(der, pointOf(t, &keyA.PublicKey), pointOf(t, &keyB.PublicKey), 1)
	})
	// One hex digit of the platform id changed after signing.
	tampered := reencode(t, f.csr, func(der []byte) []byte {
		i := bytes.Index(der, []byte(good.PlatformID))
		der[i] ^= 0x01
		return der
	})
	flippedSig := reencode(t, f.csr, func(der []byte) []byte { der[len(der)-1] ^= 0x01; return der })
	certBlock, err := os.ReadFile(filepath.Join(f.p1Dir, sim.AttestationCrtFile))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		raw    []byte
		wantIs error
		want   string
	}{
		{"signed by another key", signedByOther, sim.ErrRequestSignature, "does not verify"},
		{"tampered subject", tampered, sim.ErrRequestSignature, "does not verify"},
		{"tampered signature", flippedSig, sim.ErrRequestSignature, "does not verify"},
		{"empty", nil, sim.ErrMalformedRequest, "no PEM"},
		{"not PEM", []byte("hello"), sim.ErrMalformedRequest, "no PEM"},
		{"a certificate", certBlock, sim.ErrMalformedRequest, `want "CERTIFICATE REQUEST"`},
		{"text before the block", append([]byte("note\n"), f.csr...), sim.ErrMalformedRequest, "at the start"},
		{"data after the block", append(bytes.Clone(f.csr), "x"...), sim.ErrMalformedRequest, "data after the PEM block"},
		{"two requests", append(bytes.Clone(f.csr), f.csr...), sim.ErrMalformedRequest, "data after the PEM block"},
		{"PEM headers", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Headers: map[string]string{"a": "b"}, Bytes: []byte{1}}), sim.ErrMalformedRequest, "headers"},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte("garbage")}), sim.ErrMalformedRequest, "malformed"},
		{"truncated DER", reencode(t, f.csr, func(der []byte) []byte { return der[:len(der)-3] }), sim.ErrMalformedRequest, "malformed"},
		{"too large", append(bytes.Clone(f.csr), bytes.Repeat([]byte(" "), sim.MaxRequestSize)...), sim.ErrMalformedRequest, "more than"},
		{"P-384 key", csrPEM(t, &x509.CertificateRequest{Subject: cn}, p384), sim.ErrMalformedRequest, "want ECDSA P-256"},
		{"ed25519 key", csrPEM(t, &x509.CertificateRequest{Subject: cn}, edKey), sim.ErrMalformedRequest, "want ECDSA P-256"},
		{"SHA-384 signature", csrPEM(t, &x509.CertificateRequest{Subject: cn, SignatureAlgorithm: x509.ECDSAWithSHA384}, keyA), sim.ErrMalformedRequest, "ECDSA-SHA256"},
		{"another common name", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "a platform"}}, keyA), sim.ErrMalformedRequest, "subject common name"},
		{"upper-case platform id", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "teeup simulated platform ABCDEF0123456789"}}, keyA), sim.ErrMalformedRequest, "subject common name"},
		{"short platform id", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "teeup simulated platform abc"}}, keyA), sim.ErrMalformedRequest, "subject common name"},
		{"non-hex platform id", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "teeup simulated platform zzzzzzzzzzzzzzzz"}}, keyA), sim.ErrMalformedRequest, "not hex"},
		{"extra subject field", csrPEM(t, &x509.CertificateRequest{Subject: pkix.Name{CommonName: cn.CommonName, Organization: []string{"org"}}}, keyA), sim.ErrMalformedRequest, "only the common name"},
		{"no subject", csrPEM(t, &x509.CertificateRequest{}, keyA), sim.ErrMalformedRequest, "only the common name"},
		{"extension (DNS name)", csrPEM(t, &x509.CertificateRequest{Subject: cn, DNSNames: []string{"host.example"}}, keyA), sim.ErrMalformedRequest, "extensions"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := sim.ParseRequest(tc.raw)
			wantErr(t, err, tc.want)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if req != nil {
				t.Fatal("a rejected request was returned")
			}
			cert, req, err := f.ca.CertifyRequest(tc.raw)
			if !errors.Is(err, tc.wantIs) || cert != nil || req != nil {
				t.Fatalf("CertifyRequest: %v, want %v and no certificate", err, tc.wantIs)
			}
		})
	}
}

func TestInstallCertificateRejects(t *testing.T) {
	f := newRequestFixture(t)
	other := filepath.Join(f.dir + "-other")
	otherCSR, err := sim.RequestPlatform(other, f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := f.ca.CertifyRequest(f.csr)
	if err != nil {
		t.Fatal(err)
	}
	byOtherCA, _, err := f.otherCA.CertifyRequest(f.csr)
	if err != nil {
		t.Fatal(err)
	}
	forOtherPlatform, _, err := f.ca.CertifyRequest(otherCSR)
	if err != nil {
		t.Fatal(err)
	}
	rootPEM, err := os.ReadFile(filepath.Join(f.caDir, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	p1Cert, err := os.ReadFile(filepath.Join(f.p1Dir, sim.AttestationCrtFile))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		raw    []byte
		wantIs error
		want   string
	}{
		{"issued by another CA", byOtherCA, sim.ErrWrongCA, "not issued by the pinned root"},
		{"tampered certificate", reencode(t, good, func(der []byte) []byte { der[len(der)-1] ^= 0x01; return der }), sim.ErrWrongCA, "not issued by the pinned root"},
		{"tampered subject", reencode(t, good, func(der []byte) []byte {
			i := bytes.Index(der, []byte("teeup simulated platform "))
			der[i] ^= 0x20
			return der
		}), sim.ErrWrongCA, "not issued by the pinned root"},
		{"for another platform's request", forOtherPlatform, sim.ErrWrongKey, "another attestation key"},
		{"another platform's certificate", p1Cert, sim.ErrWrongKey, "another attestation key"},
		{"the root certificate", rootPEM, sim.ErrMalformedCertificate, "CA certificate"},
		{"a request", f.csr, sim.ErrMalformedCertificate, `want "CERTIFICATE"`},
		{"not PEM", []byte("certificate"), sim.ErrMalformedCertificate, "no PEM"},
		{"data after the block", append(bytes.Clone(good), "x"...), sim.ErrMalformedCertificate, "data after"},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")}), sim.ErrMalformedCertificate, "malformed"},
		{"too large", append(bytes.Clone(good), bytes.Repeat([]byte("\n"), sim.MaxCertificateSize)...), sim.ErrMalformedCertificate, "more than"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := readFiles(t, f.dir)
			p, err := sim.InstallCertificate(f.dir, tc.raw)
			wantErr(t, err, tc.want)
			if !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if p != nil {
				t.Fatal("a rejected install returned a platform")
			}
			if !equalFiles(before, readFiles(t, f.dir)) {
				t.Fatal("a rejected install changed the platform")
			}
			if _, err := sim.OpenPlatform(f.dir); !errors.Is(err, sim.ErrPlatformPending) {
				t.Fatalf("after a rejected install: %v, want still pending", err)
			}
		})
	}
	// Nothing to install into.
	if _, err := sim.InstallCertificate(t.TempDir(), good); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("install without a platform: %v", err)
	}
	// The genuine one installs after all that.
	if _, err := sim.InstallCertificate(f.dir, good); err != nil {
		t.Fatal(err)
	}
}

// TestCAWithOnlyRootCertificate covers a CA directory from which the key was
// kept away: it can pin, not certify, and nothing writes a root.key there.
func TestCAWithOnlyRootCertificate(t *testing.T) {
	f := newFixture(t)
	crtOnly := filepath.Join(t.TempDir(), "ca") // a private directory, as InitCA wants
	if err := os.Mkdir(crtOnly, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(f.caDir, sim.RootCertFile), filepath.Join(crtOnly, sim.RootCertFile))
	before := readFiles(t, crtOnly)
	ca, err := sim.OpenOrInitCA(crtOnly)
	if !errors.Is(err, sim.ErrNoCAKey) || ca != nil {
		t.Fatalf("OpenOrInitCA(root.crt only) = %v, want ErrNoCAKey", err)
	}
	if _, err := sim.InitCA(crtOnly); !errors.Is(err, os.ErrExist) {
		t.Fatalf("InitCA(root.crt only) = %v, want os.ErrExist", err)
	}
	if !equalFiles(before, readFiles(t, crtOnly)) {
		t.Fatal("a root.crt-only CA directory was changed (stray root.key?)")
	}
	// Its root pins a platform that requests its certificate.
	root, err := sim.ReadCertificate(filepath.Join(crtOnly, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	csr, err := sim.RequestPlatform(filepath.Join(t.TempDir(), "p"), root)
	if err != nil || !strings.Contains(string(csr), "CERTIFICATE REQUEST") {
		t.Fatalf("request pinned to a root.crt-only CA: %v", err)
	}
	if got := sim.Fingerprint(root); got != sim.Fingerprint(f.ca.Certificate()) || len(got) != 64 {
		t.Fatalf("fingerprint %q", got)
	}
}
