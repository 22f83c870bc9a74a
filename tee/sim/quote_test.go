package sim_test

import (
	"bytes"
	"encoding/binary"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// Offsets in a quote, from the layout documented in quote.go.
const (
	qOffVersion  = 4
	qOffIdentity = 5
	qOffData     = qOffIdentity + tee.IdentitySize
	qOffCertLen  = qOffData + tee.ReportDataSize
	qOffCert     = qOffCertLen + 2
)

// assembleQuote encodes a quote from its parts with the documented layout.
func assembleQuote(body, cert, sig []byte) []byte {
	b := bytes.Clone(body[:qOffCertLen])
	b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
	b = append(b, cert...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sig)))
	return append(b, sig...)
}

func quoteOf(t testing.TB, e tee.Enclave, data tee.ReportData) []byte {
	t.Helper()
	q, err := e.Quote(data)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func rootPEM(t testing.TB, f *fixture) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.caDir, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestQuoteRoundTrip(t *testing.T) {
	f := newFixture(t)
	fromPEM, err := sim.NewVerifierFromPEM(rootPEM(t, f))
	if err != nil {
		t.Fatal(err)
	}
	platformRoot, err := os.ReadFile(filepath.Join(f.p1Dir, sim.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	fromPlatformPEM, err := sim.NewVerifierFromPEM(platformRoot)
	if err != nil {
		t.Fatal(err)
	}
	debugB := f.idB
	debugB.Debug = true
	verifiers := map[string]tee.QuoteVerifier{
		"p1.Verifier":                f.p1.Verifier(),
		"p2.Verifier (other host)":   f.p2.Verifier(),
		"NewVerifierFromPEM(CA)":     fromPEM,
		"NewVerifierFromPEM(p1 dir)": fromPlatformPEM,
		"NewVerifier(CA cert)":       sim.NewVerifier(f.ca.Certificate()),
	}
	quotes := []struct {
		name string
		e    *sim.Enclave
		data tee.ReportData
	}{
		{"A on p1", f.p1.NewEnclave(f.idA), reportData(t, "tls key hash")},
		{"debug B on p2", f.p2.NewEnclave(debugB), tee.HashReportData("x", []byte("y"))},
		{"zero data", f.p1.NewEnclave(f.idB), tee.ReportData{}},
	}
	for _, q := range quotes {
		raw := quoteOf(t, q.e, q.data)
		for vname, v := range verifiers {
			t.Run(q.name+"/"+vname, func(t *testing.T) {
				r, err := v.VerifyQuote(raw)
				if err != nil {
					t.Fatalf("VerifyQuote: %v", err)
				}
				want := tee.Report{Identity: q.e.Identity(), Data: q.data}
				if r != want {
					t.Fatalf("report = %+v, want %+v (zero target)", r, want)
				}
			})
		}
	}
	if !f.p1.Verifier().Root().Equal(f.ca.Certificate()) {
		t.Fatal("platform verifier is not pinned to the CA root")
	}
}

func TestQuoteCarriesAttestationCertificate(t *testing.T) {
	f := newFixture(t)
	e := f.p1.NewEnclave(f.idA)
	q1 := quoteOf(t, e, reportData(t, "x"))
	q2 := quoteOf(t, e, reportData(t, "x"))
	d1, err := sim.DecodeQuote(q1)
	if err != nil {
		t.Fatal(err)
	}
	d2, err := sim.DecodeQuote(q2)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d1.Signed, d2.Signed) {
		t.Fatal("signed part of two quotes of the same content differs")
	}
	if !bytes.Equal(d1.CertDER, attestationCertDER(t, f.p1)) || !bytes.Equal(d1.Signature, q1[len(d1.Signed)+2:]) {
		t.Fatal("quote does not carry the platform's attestation certificate")
	}
}

// attestationCertDER returns the DER attestation certificate of p.
func attestationCertDER(t testing.TB, p *sim.Platform) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(p.Dir(), sim.AttestationCrtFile))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(raw)
	if blk == nil {
		t.Fatal("attestation.crt: no PEM block")
	}
	return blk.Bytes
}

func TestVerifyQuoteRejects(t *testing.T) {
	f := newFixture(t)
	e := f.p1.NewEnclave(f.idA)
	good := quoteOf(t, e, reportData(t, "data"))
	d, err := sim.DecodeQuote(good)
	if err != nil {
		t.Fatal(err)
	}
	certLen := len(d.CertDER)
	offSigLen := qOffCert + certLen
	offSig := offSigLen + 2

	foreignQuote := quoteOf(t, f.foreign.NewEnclave(f.idA), reportData(t, "data"))
	fd, err := sim.DecodeQuote(foreignQuote)
	if err != nil {
		t.Fatal(err)
	}
	p2d, err := sim.DecodeQuote(quoteOf(t, f.p2.NewEnclave(f.idA), reportData(t, "data")))
	if err != nil {
		t.Fatal(err)
	}
	const sigErr = "signature does not verify (tampered)"
	const chainErr = "does not chain to the pinned root"
	cases := []struct {
		name string
		v    *sim.Verifier
		raw  []byte
		want string
	}{
		{"foreign root", f.p1.Verifier(), foreignQuote, chainErr},
		{"genuine quote, verifier pinned to foreign root", f.foreign.Verifier(), good, chainErr},
		{"tampered MRENCLAVE", f.p1.Verifier(), flipAt(good, qOffIdentity), sigErr},
		{"tampered MRSIGNER", f.p1.Verifier(), flipAt(good, qOffIdentity+40), sigErr},
		{"tampered product", f.p1.Verifier(), flipAt(good, qOffIdentity+65), sigErr},
		{"tampered svn", f.p1.Verifier(), flipAt(good, qOffIdentity+67), sigErr},
		{"debug flag set", f.p1.Verifier(), setAt(good, qOffIdentity+68, 1), sigErr},
		{"debug flag not a bool", f.p1.Verifier(), setAt(good, qOffIdentity+68, 2), "debug flag 2"},
		{"tampered data", f.p1.Verifier(), flipAt(good, qOffData+10), sigErr},
		{"tampered data last byte", f.p1.Verifier(), flipAt(good, qOffCertLen-1), sigErr},
		{"tampered cert signature", f.p1.Verifier(), flipAt(good, offSigLen-1), chainErr},
		{"tampered cert body", f.p1.Verifier(), flipAt(good, qOffCert+certLen/2), "verify quote"},
		{"tampered cert DER header", f.p1.Verifier(), flipAt(good, qOffCert), "attestation certificate"},
		{"tampered signature last byte", f.p1.Verifier(), flipAt(good, -1), sigErr},
		{"tampered signature middle", f.p1.Verifier(), flipAt(good, offSig+10), sigErr},
		{"signature from another platform's key", f.p1.Verifier(), assembleQuote(good, d.CertDER, p2d.Signature), sigErr},
		{"certificate of another platform swapped in", f.p1.Verifier(), assembleQuote(good, p2d.CertDER, d.Signature), sigErr},
		// The foreign root has the same subject name as the pinned one:
		// the pinned key, not the name, must decide.
		{"foreign certificate with genuine signature", f.p1.Verifier(), assembleQuote(good, fd.CertDER, d.Signature), chainErr},
		{"root certificate as attestation cert", f.p1.Verifier(), assembleQuote(good, f.ca.Certificate().Raw, d.Signature), sigErr},
		{"empty signature", f.p1.Verifier(), assembleQuote(good, d.CertDER, nil), "signature length 0 out of range 1..80"},
		{"oversized signature", f.p1.Verifier(), assembleQuote(good, d.CertDER, make([]byte, 81)), "signature length 81 out of range"},
		{"empty certificate", f.p1.Verifier(), assembleQuote(good, nil, d.Signature), "certificate length 0 out of range 1..4096"},
		{"oversized certificate length", f.p1.Verifier(), append(append(bytes.Clone(good[:qOffCertLen]), 0x10, 0x01), good[qOffCert:]...), "certificate length 4097 out of range"},
		{"certificate length past end", f.p1.Verifier(), append(append(bytes.Clone(good[:qOffCertLen]), 0x0f, 0xff), good[qOffCert:]...), "truncated in certificate"},
		{"truncated by one", f.p1.Verifier(), good[:len(good)-1], "bytes, want"},
		{"trailing byte", f.p1.Verifier(), append(bytes.Clone(good), 0), "bytes, want"},
		{"truncated in certificate", f.p1.Verifier(), good[:qOffCert+10], "truncated in certificate"},
		{"truncated at signature length", f.p1.Verifier(), good[:offSigLen+1], "truncated in certificate"},
		{"fixed part only", f.p1.Verifier(), good[:qOffCert], "shorter than the minimum"},
		{"empty", f.p1.Verifier(), nil, "quote: 0 bytes, shorter than the minimum"},
		{"garbage", f.p1.Verifier(), bytes.Repeat([]byte{0xa5}, 400), "bad magic"},
		{"local report magic", f.p1.Verifier(), append([]byte("TRPT"), good[4:]...), `bad magic "TRPT"`},
		{"version 2", f.p1.Verifier(), setAt(good, qOffVersion, 2), "unsupported version 2"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.v.VerifyQuote(tc.raw)
			wantErr(t, err, tc.want)
			if !strings.HasPrefix(err.Error(), "verify quote") {
				t.Fatalf("error %q lacks the 'verify quote' context", err)
			}
			if r != (tee.Report{}) {
				t.Fatalf("rejected quote returned content %+v", r)
			}
		})
	}
	if _, err := f.p1.Verifier().VerifyQuote(good); err != nil {
		t.Fatalf("genuine quote no longer verifies: %v", err)
	}
}

func TestNewVerifierFromPEMRejects(t *testing.T) {
	f := newFixture(t)
	keyPEM, err := os.ReadFile(filepath.Join(f.caDir, sim.CAKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	good := rootPEM(t, f)
	blk, _ := pem.Decode(good)
	badDER := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: blk.Bytes[:len(blk.Bytes)/2]})
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "no PEM CERTIFICATE block"},
		{"not PEM", []byte("hello"), "no PEM CERTIFICATE block"},
		{"private key PEM", keyPEM, "no PEM CERTIFICATE block"},
		{"truncated DER", badDER, "parse certificate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := sim.NewVerifierFromPEM(tc.in)
			wantErr(t, err, tc.want)
			if v != nil {
				t.Fatal("rejected root still produced a verifier")
			}
		})
	}
}
