package sim_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"encoding/pem"
	"errors"
	"testing"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// FuzzDecodeReport checks that DecodeReport and VerifyLocalReport never
// panic, that they agree, and that only a genuine report verifies.
func FuzzDecodeReport(f *testing.F) {
	fx := newFixture(f)
	a := fx.p1.NewEnclave(fx.idA)
	b := fx.p1.NewEnclave(fx.idB)
	good, err := a.LocalReport(targetInfo(f, b), reportData(f, "fuzz"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(flipAt(good, repOffMAC))
	f.Add(flipAt(good, repOffTarget))
	f.Add(setAt(good, repOffDebug, 2))
	f.Add(good[:len(good)-1])
	f.Add(append(bytes.Clone(good), 0))
	f.Add(make([]byte, repLen))
	f.Add([]byte("TRPT"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, derr := sim.DecodeReport(raw)
		if derr == nil && len(raw) != repLen {
			t.Fatalf("DecodeReport accepted %d bytes", len(raw))
		}
		r, err := b.VerifyLocalReport(raw)
		if err != nil {
			if r != (tee.Report{}) {
				t.Fatalf("failed verification returned %+v", r)
			}
			return
		}
		if derr != nil || d != r {
			t.Fatalf("VerifyLocalReport = %+v but DecodeReport = %+v, %v", r, d, derr)
		}
		if !bytes.Equal(raw, good) {
			t.Fatalf("VerifyLocalReport accepted a forged report %x", raw)
		}
	})
}

// FuzzDecodeQuote checks that DecodeQuote and VerifyQuote never panic, that
// decoded parts are consistent with the input, and that a verified quote
// carries the genuine content.
func FuzzDecodeQuote(f *testing.F) {
	fx := newFixture(f)
	e := fx.p1.NewEnclave(fx.idA)
	data := reportData(f, "fuzz")
	good := quoteOf(f, e, data)
	d, err := sim.DecodeQuote(good)
	if err != nil {
		f.Fatal(err)
	}
	foreign := quoteOf(f, fx.foreign.NewEnclave(fx.idA), data)
	f.Add(good)
	f.Add(foreign)
	f.Add(flipAt(good, qOffIdentity))
	f.Add(flipAt(good, -1))
	f.Add(good[:len(good)-1])
	f.Add(good[:qOffCert+2])
	f.Add(assembleQuote(good, d.CertDER, nil))
	f.Add(assembleQuote(good, nil, d.Signature))
	f.Add([]byte("TQOT"))
	f.Add([]byte{})
	v := fx.p1.Verifier()
	want := tee.Report{Identity: fx.idA, Data: data}
	f.Fuzz(func(t *testing.T, raw []byte) {
		q, derr := sim.DecodeQuote(raw)
		if derr == nil {
			if !bytes.HasPrefix(raw, q.Signed) || len(q.Signed)+2+len(q.Signature) != len(raw) ||
				len(q.CertDER) == 0 || len(q.CertDER) > 4096 || len(q.Signature) == 0 || len(q.Signature) > 80 {
				t.Fatalf("inconsistent decoded quote: signed %d cert %d sig %d of %d bytes", len(q.Signed), len(q.CertDER), len(q.Signature), len(raw))
			}
		}
		r, err := v.VerifyQuote(raw)
		if err != nil {
			if r != (tee.Report{}) {
				t.Fatalf("failed verification returned %+v", r)
			}
			return
		}
		if derr != nil {
			t.Fatalf("VerifyQuote accepted what DecodeQuote rejects: %v", derr)
		}
		if r != want {
			t.Fatalf("VerifyQuote accepted forged content %+v", r)
		}
	})
}

// FuzzParseSigStruct checks that ParseSigStruct never panics and that
// whatever it accepts re-encodes to the input and carries a signature by
// the key it names.
func FuzzParseSigStruct(f *testing.F) {
	fx := newFixture(f)
	good, err := sim.NewSigStruct(fx.idA.UniqueID, 3, 4, fx.signer).MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(flipAt(good, sigOffSig))
	f.Add(flipAt(good, sigOffMR))
	f.Add(setAt(good, sigOffVersion, 0))
	f.Add(good[:sigLen-1])
	f.Add(make([]byte, sigLen))
	f.Add([]byte("TSIG"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		s, err := sim.ParseSigStruct(raw)
		if err != nil {
			if s != nil {
				t.Fatal("failed parse returned a structure")
			}
			return
		}
		enc, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("MarshalBinary of a parsed structure: %v", err)
		}
		if !bytes.Equal(enc, raw) {
			t.Fatalf("ParseSigStruct(%x) re-encodes to %x", raw, enc)
		}
		if s.SignerID() != sim.SignerIDOf(s.SignerKey) {
			t.Fatal("SignerID is not the hash of the signer key")
		}
	})
}

// FuzzDecodeTargetInfo checks that DecodeTargetInfo never panics and that
// whatever it accepts is exactly TargetInfoFor of the decoded target,
// and that LocalReport accepts the same inputs.
func FuzzDecodeTargetInfo(f *testing.F) {
	fx := newFixture(f)
	e := fx.p1.NewEnclave(fx.idA)
	good := sim.TargetInfoFor(sim.Target{MREnclave: fx.idB.UniqueID})
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(setAt(good, 4, 0))
	f.Add(flipAt(good, 0))
	f.Add(setAt(good, len(good)-1, 1))
	f.Add(setAt(good, len(good)-1, 0x80))
	f.Add([]byte("TTGT"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := sim.DecodeTargetInfo(raw)
		rep, rerr := e.LocalReport(raw, tee.ReportData{})
		if err != nil {
			if rerr == nil {
				t.Fatalf("LocalReport accepted target info that DecodeTargetInfo rejects: %v", err)
			}
			return
		}
		if !bytes.Equal(sim.TargetInfoFor(m), raw) {
			t.Fatalf("DecodeTargetInfo(%x) = %+v does not re-encode to the input", raw, m)
		}
		if rerr != nil {
			t.Fatalf("LocalReport rejected valid target info: %v", rerr)
		}
		// The report is verifiable by exactly the enclave named.
		named := fx.p1.NewEnclave(tee.Identity{UniqueID: m.MREnclave, Debug: m.Debug})
		if _, err := named.VerifyLocalReport(rep); err != nil {
			t.Fatalf("report for %+v does not verify there: %v", m, err)
		}
		other := fx.p1.NewEnclave(tee.Identity{UniqueID: m.MREnclave, Debug: !m.Debug})
		if _, err := other.VerifyLocalReport(rep); err == nil {
			t.Fatalf("report for %+v verifies in the enclave with the other DEBUG attribute", m)
		}
	})
}

// FuzzParseRequest checks that ParseRequest never panics, that whatever it
// accepts names a P-256 key and a well-formed platform id, and that the
// certificate the CA issues for it is accepted for exactly that key.
func FuzzParseRequest(f *testing.F) {
	fx := newRequestFixture(f)
	f.Add(fx.csr)
	f.Add(flipAt(fx.csr, len(fx.csr)/2))
	f.Add(fx.csr[:len(fx.csr)-30])
	f.Add(append(bytes.Clone(fx.csr), fx.csr...))
	if blk, _ := pem.Decode(fx.csr); blk != nil {
		f.Add(blk.Bytes)
	}
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte{})
	root := fx.ca.Certificate()
	f.Fuzz(func(t *testing.T, raw []byte) {
		req, err := sim.ParseRequest(raw)
		if err != nil {
			if req != nil {
				t.Fatal("failed parse returned a request")
			}
			if !errors.Is(err, sim.ErrMalformedRequest) && !errors.Is(err, sim.ErrRequestSignature) {
				t.Fatalf("error %v is neither ErrMalformedRequest nor ErrRequestSignature", err)
			}
			return
		}
		if len(req.PlatformID) != 16 || req.PublicKey.Curve != elliptic.P256() {
			t.Fatalf("accepted request with platform id %q curve %v", req.PlatformID, req.PublicKey.Curve.Params().Name)
		}
		certPEM, again, err := fx.ca.CertifyRequest(raw)
		if err != nil || again.PlatformID != req.PlatformID {
			t.Fatalf("CertifyRequest of an accepted request: %v", err)
		}
		if _, err := sim.CheckAttestationCertificate(certPEM, root, req.PublicKey); err != nil {
			t.Fatalf("issued certificate rejected: %v", err)
		}
	})
}

// FuzzCheckAttestationCertificate checks that CheckAttestationCertificate
// never panics and accepts only a certificate of the pinned root for the
// platform's own key.
func FuzzCheckAttestationCertificate(f *testing.F) {
	fx := newRequestFixture(f)
	good, _, err := fx.ca.CertifyRequest(fx.csr)
	if err != nil {
		f.Fatal(err)
	}
	foreign, _, err := fx.otherCA.CertifyRequest(fx.csr)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(foreign)
	f.Add(flipAt(good, len(good)/2))
	f.Add(good[:len(good)-30])
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	req, err := sim.ParseRequest(fx.csr)
	if err != nil {
		f.Fatal(err)
	}
	root := fx.ca.Certificate()
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := sim.CheckAttestationCertificate(raw, root, req.PublicKey)
		if err != nil {
			if c != nil {
				t.Fatal("failed check returned a certificate")
			}
			return
		}
		if c.IsCA || c.CheckSignatureFrom(root) != nil || !c.PublicKey.(*ecdsa.PublicKey).Equal(req.PublicKey) {
			t.Fatalf("accepted a certificate that is not the root's for the platform key: %q", c.Subject.CommonName)
		}
	})
}
