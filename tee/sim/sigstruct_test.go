package sim_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// Offsets in a signature structure, from the layout in sigstruct.go.
const (
	sigOffVersion = 4
	sigOffMR      = 5
	sigOffProduct = sigOffMR + 32
	sigOffSVN     = sigOffProduct + 2
	sigOffKey     = sigOffSVN + 2
	sigOffSig     = sigOffKey + ed25519.PublicKeySize
	sigLen        = sigOffSig + ed25519.SignatureSize
)

func TestSignAndLoad(t *testing.T) {
	f := newFixture(t)
	content := []byte("#!/bin/true\nenclave v1\n")
	bin := writeBinary(t, t.TempDir(), "node", content)
	ss, err := sim.SignBinary(bin, 7, 3, f.signer)
	if err != nil {
		t.Fatalf("SignBinary: %v", err)
	}
	want := tee.Identity{
		UniqueID:        sha256.Sum256(content),
		SignerID:        sha256.Sum256(f.signer.Public().(ed25519.PublicKey)),
		ProductID:       7,
		SecurityVersion: 3,
	}
	if ss.Identity() != want || ss.SignerID() != want.SignerID {
		t.Fatalf("SigStruct identity = %+v, want %+v", ss.Identity(), want)
	}
	m, err := sim.Measure(bin)
	if err != nil || m != want.UniqueID {
		t.Fatalf("Measure = %s, %v; want SHA-256 of the file %s", m, err, want.UniqueID)
	}

	raw, err := os.ReadFile(bin + sim.SigStructSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) != sigLen {
		t.Fatalf(".sig is %d bytes, want %d", len(raw), sigLen)
	}
	parsed, err := sim.ParseSigStruct(raw)
	if err != nil {
		t.Fatalf("ParseSigStruct: %v", err)
	}
	if parsed.Identity() != want || !bytes.Equal(parsed.Signature, ss.Signature) {
		t.Fatalf("parsed %+v, want %+v", parsed.Identity(), want)
	}
	again, err := parsed.MarshalBinary()
	if err != nil || !bytes.Equal(again, raw) {
		t.Fatalf("MarshalBinary(ParseSigStruct(raw)) != raw (%v)", err)
	}
	if st, err := os.Stat(bin + sim.SigStructSuffix); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf(".sig mode = %v, %v; want 0600", st.Mode().Perm(), err)
	}

	id, vss, err := sim.VerifyBinary(bin)
	if err != nil || id != want || vss.SignerID() != want.SignerID {
		t.Fatalf("VerifyBinary = %+v, %v", id, err)
	}
	e, err := f.p1.Load(bin, sim.LoadOptions{})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if e.Identity() != want {
		t.Fatalf("Load identity = %+v, want %+v", e.Identity(), want)
	}
	// Debug load of a correctly signed binary keeps the signed identity
	// and marks it Debug.
	de, err := f.p1.Load(bin, sim.LoadOptions{Debug: true})
	if err != nil {
		t.Fatalf("Load debug: %v", err)
	}
	wantDebug := want
	wantDebug.Debug = true
	if de.Identity() != wantDebug {
		t.Fatalf("debug Load identity = %+v, want %+v", de.Identity(), wantDebug)
	}
	// Re-signing overwrites the .sig (signing is not a key; overwriting is fine).
	if _, err := sim.SignBinary(bin, 7, 4, f.signer2); err != nil {
		t.Fatalf("re-sign: %v", err)
	}
	e2, err := f.p1.Load(bin, sim.LoadOptions{})
	if err != nil || e2.Identity().SecurityVersion != 4 || e2.Identity().SignerID != sim.SignerIDOf(f.signer2.Public().(ed25519.PublicKey)) {
		t.Fatalf("Load after re-sign = %+v, %v", e2.Identity(), err)
	}
}

func TestLoadDebugUnsigned(t *testing.T) {
	f := newFixture(t)
	content := []byte("unsigned enclave")
	bin := writeBinary(t, t.TempDir(), "node", content)
	e, err := f.p1.Load(bin, sim.LoadOptions{Debug: true})
	if err != nil {
		t.Fatalf("Load debug: %v", err)
	}
	want := tee.Identity{UniqueID: sha256.Sum256(content), Debug: true}
	if e.Identity() != want {
		t.Fatalf("identity = %+v, want %+v", e.Identity(), want)
	}
}

func TestLoadRejects(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()

	signed := func(name string) string {
		bin := writeBinary(t, dir, name, []byte("enclave "+name))
		if _, err := sim.SignBinary(bin, 1, 1, f.signer); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	withSig := func(name string, mutate func([]byte) []byte) string {
		bin := signed(name)
		raw, err := os.ReadFile(bin + sim.SigStructSuffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(bin+sim.SigStructSuffix, mutate(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		return bin
	}
	flip := func(off int) func([]byte) []byte { return func(b []byte) []byte { return flipAt(b, off) } }

	unsigned := writeBinary(t, dir, "unsigned", []byte("no sig"))
	changed := signed("changed")
	if err := os.WriteFile(changed, []byte("enclave changed, patched"), 0o755); err != nil {
		t.Fatal(err)
	}
	otherSig := signed("other")
	swapped := signed("swapped")
	// The .sig of another (validly signed) binary.
	otherRaw, err := os.ReadFile(otherSig + sim.SigStructSuffix)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(swapped+sim.SigStructSuffix, otherRaw, 0o600); err != nil {
		t.Fatal(err)
	}
	// A .sig whose signature is valid but made by another key than the one
	// it names.
	resigned := withSig("resigned", func(b []byte) []byte {
		b = bytes.Clone(b)
		copy(b[sigOffSig:], ed25519.Sign(f.signer2, b[:sigOffSig]))
		return b
	})
	sigDir := writeBinary(t, dir, "sigdir", []byte("x"))
	if err := os.Mkdir(sigDir+sim.SigStructSuffix, 0o700); err != nil {
		t.Fatal(err)
	}

	const notVerify = "does not verify (tampered)"
	cases := []struct {
		name      string
		bin       string
		wantIs    error
		want      string
		debugLoad bool // Load with Debug succeeds (with the binary's own measurement)
	}{
		{name: "no .sig", bin: unsigned, wantIs: sim.ErrNoSigStruct, want: "no signature structure (sign it with 'teeup enclave sign')", debugLoad: true},
		{name: "binary changed after signing", bin: changed, want: "binary changed after signing", debugLoad: true},
		{name: ".sig of another binary", bin: swapped, want: "binary changed after signing", debugLoad: true},
		{name: "tampered magic", bin: withSig("magic", flip(0)), want: "bad magic", debugLoad: true},
		{name: "tampered version", bin: withSig("version", flip(sigOffVersion)), want: "unsupported version 0", debugLoad: true},
		{name: "tampered MRENCLAVE", bin: withSig("mr", flip(sigOffMR+7)), want: notVerify, debugLoad: true},
		{name: "tampered product id", bin: withSig("product", flip(sigOffProduct+1)), want: notVerify, debugLoad: true},
		{name: "tampered svn", bin: withSig("svn", flip(sigOffSVN)), want: notVerify, debugLoad: true},
		{name: "tampered signer key", bin: withSig("key", flip(sigOffKey+3)), want: notVerify, debugLoad: true},
		{name: "tampered signature first byte", bin: withSig("sig0", flip(sigOffSig)), want: notVerify, debugLoad: true},
		{name: "tampered signature last byte", bin: withSig("sig63", flip(sigLen-1)), want: notVerify, debugLoad: true},
		{name: "signed by a key other than the named signer", bin: resigned, want: notVerify, debugLoad: true},
		{name: "truncated .sig", bin: withSig("short", func(b []byte) []byte { return b[:len(b)-1] }), want: "136 bytes, want 137", debugLoad: true},
		{name: "extended .sig", bin: withSig("long", func(b []byte) []byte { return append(b, 0) }), want: "138 bytes, want 137", debugLoad: true},
		{name: "empty .sig", bin: withSig("empty", func([]byte) []byte { return nil }), want: "0 bytes, want 137", debugLoad: true},
		{name: ".sig is a directory", bin: sigDir, want: "read signature structure", debugLoad: true},
		{name: "missing binary", bin: filepath.Join(dir, "absent"), wantIs: os.ErrNotExist, want: "measure"},
		{name: "binary is a directory", bin: dir, want: "measure"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := os.ReadFile(tc.bin + sim.SigStructSuffix)
			e, err := f.p1.Load(tc.bin, sim.LoadOptions{})
			wantErr(t, err, tc.want)
			if e != nil {
				t.Fatal("refused Load returned an enclave")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if _, _, verr := sim.VerifyBinary(tc.bin); verr == nil {
				t.Fatal("VerifyBinary accepted what Load refused")
			}
			after, _ := os.ReadFile(tc.bin + sim.SigStructSuffix)
			if !bytes.Equal(before, after) {
				t.Fatal("Load modified the signature structure")
			}

			de, err := f.p1.Load(tc.bin, sim.LoadOptions{Debug: true})
			if !tc.debugLoad {
				if err == nil {
					t.Fatal("debug Load accepted it")
				}
				return
			}
			if err != nil {
				t.Fatalf("debug Load: %v", err)
			}
			m, err := sim.Measure(tc.bin)
			if err != nil {
				t.Fatal(err)
			}
			if want := (tee.Identity{UniqueID: m, Debug: true}); de.Identity() != want {
				t.Fatalf("debug identity = %+v, want %+v (unsigned, own measurement)", de.Identity(), want)
			}
		})
	}
}

func TestParseSigStructRejects(t *testing.T) {
	f := newFixture(t)
	good, err := sim.NewSigStruct(f.idA.UniqueID, 1, 2, f.signer).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "signature structure: 0 bytes, want 137"},
		{"short", good[:100], "100 bytes, want 137"},
		{"magic", append([]byte("TSIX"), good[4:]...), `bad magic "TSIX"`},
		{"version", setAt(good, sigOffVersion, 9), "unsupported version 9"},
		{"MRENCLAVE", flipAt(good, sigOffMR), "does not verify"},
		{"product", flipAt(good, sigOffProduct), "does not verify"},
		{"svn", flipAt(good, sigOffSVN+1), "does not verify"},
		{"signer key", flipAt(good, sigOffKey), "does not verify"},
		{"signature", flipAt(good, sigOffSig+32), "does not verify"},
		{"all zero", make([]byte, sigLen), "bad magic"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := sim.ParseSigStruct(tc.in)
			wantErr(t, err, tc.want)
			if s != nil {
				t.Fatal("rejected signature structure was returned")
			}
		})
	}
}

func TestSigStructMarshalIncomplete(t *testing.T) {
	f := newFixture(t)
	full := sim.NewSigStruct(f.idA.UniqueID, 1, 1, f.signer)
	cases := []struct {
		name string
		s    *sim.SigStruct
	}{
		{"no key, no signature", &sim.SigStruct{UniqueID: f.idA.UniqueID}},
		{"no signature", &sim.SigStruct{UniqueID: f.idA.UniqueID, SignerKey: full.SignerKey}},
		{"short key", &sim.SigStruct{SignerKey: full.SignerKey[:31], Signature: full.Signature}},
		{"short signature", &sim.SigStruct{SignerKey: full.SignerKey, Signature: full.Signature[:63]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b, err := tc.s.MarshalBinary()
			wantErr(t, err, "incomplete")
			if b != nil {
				t.Fatal("incomplete structure was encoded")
			}
		})
	}
}
