package sim_test

import (
	"bytes"
	"testing"

	"github.com/teeup/teeup/tee"
)

// BenchmarkLocalReportCreateVerify measures one local attestation: A makes
// a report for B, B verifies it.
func BenchmarkLocalReportCreateVerify(b *testing.B) {
	f := newFixture(b)
	a := f.p1.NewEnclave(f.idA)
	target := f.p1.NewEnclave(f.idB)
	ti := targetInfo(b, target)
	data := reportData(b, "bench")
	b.ReportAllocs()
	for b.Loop() {
		raw, err := a.LocalReport(ti, data)
		if err != nil {
			b.Fatal(err)
		}
		r, err := target.VerifyLocalReport(raw)
		if err != nil {
			b.Fatal(err)
		}
		if r.Data != data {
			b.Fatal("wrong data")
		}
	}
}

// BenchmarkQuoteCreateVerify measures one remote attestation: a quote made
// on one platform and verified against the pinned root.
func BenchmarkQuoteCreateVerify(b *testing.B) {
	f := newFixture(b)
	e := f.p1.NewEnclave(f.idA)
	v := f.p2.Verifier()
	data := reportData(b, "bench")
	b.ReportAllocs()
	for b.Loop() {
		raw, err := e.Quote(data)
		if err != nil {
			b.Fatal(err)
		}
		r, err := v.VerifyQuote(raw)
		if err != nil {
			b.Fatal(err)
		}
		if r.Data != data {
			b.Fatal("wrong data")
		}
	}
}

// BenchmarkSealUnseal1KiB measures sealing and unsealing 1 KiB under the
// unique policy.
func BenchmarkSealUnseal1KiB(b *testing.B) {
	f := newFixture(b)
	e := f.p1.NewEnclave(f.idA)
	plaintext := bytes.Repeat([]byte{0x5a}, 1024)
	ad := []byte("bench")
	b.SetBytes(int64(len(plaintext)))
	b.ReportAllocs()
	for b.Loop() {
		blob, err := tee.Seal(e, tee.SealUnique, plaintext, ad)
		if err != nil {
			b.Fatal(err)
		}
		got, err := tee.Unseal(e, blob, ad)
		if err != nil {
			b.Fatal(err)
		}
		if len(got) != len(plaintext) {
			b.Fatal("wrong length")
		}
	}
}
