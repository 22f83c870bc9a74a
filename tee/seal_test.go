package tee_test

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// Offsets in the sealed blob, from the layout documented in seal.go.
const (
	offMagic    = 0
	offVersion  = 4
	offPolicy   = 5
	offSVN      = 6
	offKeyID    = 8
	offSealerID = 40
	offSignerID = 72
	offProduct  = 104
	offNonce    = 106
	offCipher   = 118
	minBlobLen  = offCipher + 16
)

// sealFixture is two simulated platforms under one root and a set of
// identities that differ in exactly one respect each.
type sealFixture struct {
	p1, p2 *sim.Platform
	p1Dir  string

	base         tee.Identity // svn 2
	otherEnclave tee.Identity // other MRENCLAVE, same signer/product/svn
	higherSVN    tee.Identity // other MRENCLAVE, same signer/product, svn 3
	lowerSVN     tee.Identity // other MRENCLAVE, same signer/product, svn 1
	otherSigner  tee.Identity
	otherProduct tee.Identity
	baseDebug    tee.Identity // base with Debug set
}

func newSealFixture(t testing.TB) *sealFixture {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	f := &sealFixture{p1Dir: filepath.Join(dir, "p1")}
	if f.p1, err = sim.InitPlatform(f.p1Dir, ca); err != nil {
		t.Fatal(err)
	}
	if f.p2, err = sim.InitPlatform(filepath.Join(dir, "p2"), ca); err != nil {
		t.Fatal(err)
	}
	signer := seqMeasurement(0x80)
	f.base = tee.Identity{UniqueID: seqMeasurement(1), SignerID: signer, ProductID: 1, SecurityVersion: 2}
	f.otherEnclave = f.base
	f.otherEnclave.UniqueID = seqMeasurement(2)
	f.higherSVN = tee.Identity{UniqueID: seqMeasurement(3), SignerID: signer, ProductID: 1, SecurityVersion: 3}
	f.lowerSVN = tee.Identity{UniqueID: seqMeasurement(4), SignerID: signer, ProductID: 1, SecurityVersion: 1}
	f.otherSigner = f.base
	f.otherSigner.SignerID = seqMeasurement(0x90)
	f.otherProduct = f.base
	f.otherProduct.ProductID = 2
	f.baseDebug = f.base
	f.baseDebug.Debug = true
	return f
}

func TestSealUnsealRoundTrip(t *testing.T) {
	f := newSealFixture(t)
	reopened, err := sim.OpenPlatform(f.p1Dir)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name             string
		policy           tee.SealPolicy
		sealer, unsealer *sim.Enclave
		plaintext, ad    []byte
	}{
		{"unique same enclave", tee.SealUnique, f.p1.NewEnclave(f.base), f.p1.NewEnclave(f.base), []byte("node keys"), []byte("keys.sealed")},
		{"unique empty plaintext and ad", tee.SealUnique, f.p1.NewEnclave(f.base), f.p1.NewEnclave(f.base), nil, nil},
		{"unique after platform reopen", tee.SealUnique, f.p1.NewEnclave(f.base), reopened.NewEnclave(f.base), []byte("survives restart"), []byte("ad")},
		{"unique debug enclave", tee.SealUnique, f.p1.NewEnclave(f.baseDebug), f.p1.NewEnclave(f.baseDebug), []byte("dbg"), nil},
		{"product same enclave", tee.SealProduct, f.p1.NewEnclave(f.base), f.p1.NewEnclave(f.base), []byte("product data"), []byte("ad")},
		{"product same SVN other MRENCLAVE", tee.SealProduct, f.p1.NewEnclave(f.base), f.p1.NewEnclave(f.otherEnclave), []byte("upgrade"), nil},
		{"product higher SVN unseals lower", tee.SealProduct, f.p1.NewEnclave(f.lowerSVN), f.p1.NewEnclave(f.higherSVN), []byte("old data"), []byte("ad")},
		{"product svn 2 unseals svn 1", tee.SealProduct, f.p1.NewEnclave(f.lowerSVN), f.p1.NewEnclave(f.base), []byte("old data"), nil},
		{"large plaintext", tee.SealUnique, f.p1.NewEnclave(f.base), f.p1.NewEnclave(f.base), bytes.Repeat([]byte("x"), 1<<16), []byte("ad")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			blob, err := tee.Seal(tc.sealer, tc.policy, tc.plaintext, tc.ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			if len(tc.plaintext) >= 8 && bytes.Contains(blob, tc.plaintext) {
				t.Fatal("sealed blob contains the plaintext")
			}
			h, err := tee.ParseSealedHeader(blob)
			if err != nil {
				t.Fatalf("ParseSealedHeader: %v", err)
			}
			sid := tc.sealer.Identity()
			if h.Policy != tc.policy || h.SecurityVersion != sid.SecurityVersion || h.SealerUniqueID != sid.UniqueID ||
				h.SealerSignerID != sid.SignerID || h.SealerProductID != sid.ProductID {
				t.Fatalf("header %+v does not describe sealer %+v under %s", h, sid, tc.policy)
			}
			got, err := tee.Unseal(tc.unsealer, blob, tc.ad)
			if err != nil {
				t.Fatalf("Unseal: %v", err)
			}
			if !bytes.Equal(got, tc.plaintext) {
				t.Fatalf("Unseal = %q, want %q", got, tc.plaintext)
			}
		})
	}
}

func TestSealFreshKeyAndNonce(t *testing.T) {
	f := newSealFixture(t)
	e := f.p1.NewEnclave(f.base)
	a, err := tee.Seal(e, tee.SealUnique, []byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := tee.Seal(e, tee.SealUnique, []byte("same"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a[offKeyID:offSealerID], b[offKeyID:offSealerID]) {
		t.Fatal("two seals used the same key id")
	}
	if bytes.Equal(a[offNonce:offCipher], b[offNonce:offCipher]) {
		t.Fatal("two seals used the same nonce")
	}
	if bytes.Equal(a[offCipher:], b[offCipher:]) {
		t.Fatal("two seals of the same plaintext gave the same ciphertext")
	}
}

func flip(off int) func([]byte) []byte {
	return func(b []byte) []byte {
		b = bytes.Clone(b)
		if off < 0 {
			off += len(b)
		}
		b[off] ^= 0x01
		return b
	}
}

func setByte(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte {
		b = bytes.Clone(b)
		b[off] = v
		return b
	}
}

func TestUnsealRejects(t *testing.T) {
	f := newSealFixture(t)
	ad := []byte("additional data")
	other, err := tee.Seal(f.p1.NewEnclave(f.base), tee.SealUnique, []byte("another secret!!"), ad)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name     string
		policy   tee.SealPolicy
		sealer   *sim.Enclave
		unsealer *sim.Enclave
		mutate   func([]byte) []byte // nil: unchanged
		ad       []byte              // nil: the sealing ad
		wantIs   error               // nil: check wantText only
		wantText string
	}{
		// Identity rules.
		{name: "unique other MRENCLAVE", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.otherEnclave),
			wantIs: tee.ErrSealedForOtherEnclave, wantText: "sealed to MRENCLAVE " + f.base.UniqueID.String() + ", this enclave is " + f.otherEnclave.UniqueID.String()},
		{name: "unique higher SVN other MRENCLAVE", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.lowerSVN), unsealer: f.p1.NewEnclave(f.higherSVN),
			wantIs: tee.ErrSealedForOtherEnclave},
		{name: "product lower SVN cannot unseal higher", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.higherSVN), unsealer: f.p1.NewEnclave(f.base),
			wantIs: tee.ErrHigherSVN, wantText: "sealed at SVN 3, this enclave is SVN 2"},
		{name: "product other signer", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.otherSigner),
			wantIs: tee.ErrSealedForOtherProduct},
		{name: "product other product", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.otherProduct),
			wantIs: tee.ErrSealedForOtherProduct, wantText: "product 1, this enclave is signer"},
		// Platform and attributes.
		{name: "unique other platform", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p2.NewEnclave(f.base), wantIs: tee.ErrSealedAuth},
		{name: "product other platform", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p2.NewEnclave(f.base), wantIs: tee.ErrSealedAuth},
		{name: "unique debug unseals non-debug", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.baseDebug), wantIs: tee.ErrSealedAuth},
		{name: "unique non-debug unseals debug", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.baseDebug), unsealer: f.p1.NewEnclave(f.base), wantIs: tee.ErrSealedAuth},
		{name: "product debug unseals non-debug", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.baseDebug), wantIs: tee.ErrSealedAuth},
		// Additional data.
		{name: "wrong additional data", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), ad: []byte("other data"), wantIs: tee.ErrSealedAuth},
		{name: "additional data differing in one byte", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), ad: []byte("additional datA"), wantIs: tee.ErrSealedAuth},
		{name: "truncated additional data", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), ad: ad[:len(ad)-1], wantIs: tee.ErrSealedAuth},
		{name: "empty additional data", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), ad: []byte{}, wantIs: tee.ErrSealedAuth},
		// Tampering, header.
		{name: "header magic", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offMagic), wantText: "bad magic"},
		{name: "header version", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offVersion, 2), wantText: "unsupported version 2"},
		{name: "header unknown policy", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offPolicy, 3), wantText: "unknown policy 3"},
		{name: "header policy unique to product", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offPolicy, byte(tee.SealProduct)), wantIs: tee.ErrSealedAuth},
		{name: "header policy product to unique", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offPolicy, byte(tee.SealUnique)), wantIs: tee.ErrSealedAuth},
		{name: "header svn unique", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offSVN + 1), wantIs: tee.ErrSealedAuth},
		{name: "header svn product lowered", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offSVN+1, 1), wantIs: tee.ErrSealedAuth},
		{name: "header svn product raised", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: setByte(offSVN+1, 9), wantIs: tee.ErrHigherSVN},
		{name: "header key id", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offKeyID + 5), wantIs: tee.ErrSealedAuth},
		{name: "header sealer MRENCLAVE", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offSealerID), wantIs: tee.ErrSealedForOtherEnclave},
		{name: "header sealer MRENCLAVE under product", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offSealerID + 31), wantIs: tee.ErrSealedAuth},
		{name: "header sealer MRSIGNER under unique", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offSignerID), wantIs: tee.ErrSealedAuth},
		{name: "header sealer MRSIGNER under product", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offSignerID + 3), wantIs: tee.ErrSealedForOtherProduct},
		{name: "header product id under unique", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offProduct + 1), wantIs: tee.ErrSealedAuth},
		// Tampering, body.
		{name: "nonce", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offNonce + 11), wantIs: tee.ErrSealedAuth},
		{name: "ciphertext", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(offCipher), wantIs: tee.ErrSealedAuth},
		{name: "tag", policy: tee.SealProduct, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base), mutate: flip(-1), wantIs: tee.ErrSealedAuth},
		{name: "truncated by one", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base),
			mutate: func(b []byte) []byte { return bytes.Clone(b[:len(b)-1]) }, wantIs: tee.ErrSealedAuth},
		{name: "extended by one", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base),
			mutate: func(b []byte) []byte { return append(bytes.Clone(b), 0) }, wantIs: tee.ErrSealedAuth},
		{name: "shorter than minimum", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base),
			mutate: func(b []byte) []byte { return bytes.Clone(b[:minBlobLen-1]) }, wantText: "shorter than the minimum 134"},
		{name: "empty", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base),
			mutate: func([]byte) []byte { return nil }, wantText: "0 bytes, shorter than the minimum"},
		{name: "swapped ciphertexts", policy: tee.SealUnique, sealer: f.p1.NewEnclave(f.base), unsealer: f.p1.NewEnclave(f.base),
			mutate: func(b []byte) []byte { return append(bytes.Clone(b[:offCipher]), other[offCipher:]...) }, wantIs: tee.ErrSealedAuth},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plaintext := []byte("the ledger key!!")
			blob, err := tee.Seal(tc.sealer, tc.policy, plaintext, ad)
			if err != nil {
				t.Fatalf("Seal: %v", err)
			}
			orig := bytes.Clone(blob)
			in := blob
			if tc.mutate != nil {
				in = tc.mutate(blob)
			}
			useAD := ad
			if tc.ad != nil {
				useAD = tc.ad
			}
			got, err := tee.Unseal(tc.unsealer, in, useAD)
			if err == nil {
				t.Fatalf("Unseal succeeded with %q", got)
			}
			if got != nil {
				t.Fatalf("Unseal failed but returned %d bytes", len(got))
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %q", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("error %q does not contain %q", err, tc.wantText)
			}
			if !strings.HasPrefix(err.Error(), "unseal: ") {
				t.Fatalf("error %q lacks the 'unseal:' context", err)
			}
			// Nothing lost: the blob is untouched and its rightful owner
			// still unseals it.
			if !bytes.Equal(blob, orig) {
				t.Fatal("the sealed blob was modified")
			}
			back, err := tee.Unseal(tc.sealer, blob, ad)
			if err != nil || !bytes.Equal(back, plaintext) {
				t.Fatalf("the sealer can no longer unseal: %q, %v", back, err)
			}
		})
	}
}

func TestNilAndEmptyAdditionalDataAreEqual(t *testing.T) {
	f := newSealFixture(t)
	e := f.p1.NewEnclave(f.base)
	blob, err := tee.Seal(e, tee.SealUnique, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tee.Unseal(e, blob, []byte{}); err != nil {
		t.Fatalf("nil and empty additional data differ: %v", err)
	}
}

func TestParseSealedHeaderRejects(t *testing.T) {
	f := newSealFixture(t)
	blob, err := tee.Seal(f.p1.NewEnclave(f.base), tee.SealProduct, []byte("p"), nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "0 bytes, shorter than the minimum 134"},
		{"one short of minimum", blob[:minBlobLen-1], "133 bytes, shorter than the minimum 134"},
		{"magic", flip(offMagic + 3)(blob), "bad magic"},
		{"version 0", setByte(offVersion, 0)(blob), "unsupported version 0"},
		{"policy 0", setByte(offPolicy, 0)(blob), "unknown policy 0"},
		{"policy 255", setByte(offPolicy, 255)(blob), "unknown policy 255"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h, err := tee.ParseSealedHeader(tc.in)
			if err == nil {
				t.Fatalf("ParseSealedHeader accepted it: %+v", h)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
	// The minimum length is exactly header + nonce + tag: it parses.
	if _, err := tee.ParseSealedHeader(blob[:minBlobLen]); err != nil {
		t.Fatalf("minimum-length blob: %v", err)
	}
}

func TestSimSealKey(t *testing.T) {
	f := newSealFixture(t)
	e := f.p1.NewEnclave(f.base)
	key := func(t *testing.T, e tee.Enclave, req tee.KeyRequest) []byte {
		t.Helper()
		k, err := e.SealKey(req)
		if err != nil {
			t.Fatalf("SealKey(%+v): %v", req, err)
		}
		if len(k) != tee.SealKeySize {
			t.Fatalf("SealKey: %d bytes, want %d", len(k), tee.SealKeySize)
		}
		return k
	}
	unique := tee.KeyRequest{Policy: tee.SealUnique, SecurityVersion: 2}
	product := tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 2}
	otherID := unique
	otherID.KeyID[0] = 1
	lowerSVN := product
	lowerSVN.SecurityVersion = 1

	if !bytes.Equal(key(t, e, unique), key(t, f.p1.NewEnclave(f.base), unique)) {
		t.Fatal("SealKey is not deterministic")
	}
	ignoredSVN := unique
	ignoredSVN.SecurityVersion = 0
	if !bytes.Equal(key(t, e, unique), key(t, e, ignoredSVN)) {
		t.Fatal("SealUnique key depends on the requested SVN, which the contract says is ignored")
	}
	distinct := map[string][]byte{
		"unique":                key(t, e, unique),
		"product":               key(t, e, product),
		"unique other key id":   key(t, e, otherID),
		"product lower svn":     key(t, e, lowerSVN),
		"unique debug":          key(t, f.p1.NewEnclave(f.baseDebug), unique),
		"product debug":         key(t, f.p1.NewEnclave(f.baseDebug), product),
		"unique other enclave":  key(t, f.p1.NewEnclave(f.otherEnclave), unique),
		"unique other platform": key(t, f.p2.NewEnclave(f.base), unique),
		"product other signer":  key(t, f.p1.NewEnclave(f.otherSigner), product),
		"product other prodid":  key(t, f.p1.NewEnclave(f.otherProduct), product),
	}
	seen := map[string]string{}
	for name, k := range distinct {
		if prev, ok := seen[string(k)]; ok {
			t.Fatalf("keys %q and %q are equal", name, prev)
		}
		seen[string(k)] = name
	}
	// Product keys are shared by every MRENCLAVE of the product at the SVN.
	if !bytes.Equal(key(t, e, product), key(t, f.p1.NewEnclave(f.otherEnclave), product)) {
		t.Fatal("product keys differ between enclaves of the same signer, product and SVN")
	}
	// A higher-SVN enclave derives the lower SVN's product key.
	if !bytes.Equal(key(t, f.p1.NewEnclave(f.higherSVN), lowerSVN), key(t, f.p1.NewEnclave(f.lowerSVN), lowerSVN)) {
		t.Fatal("a higher-SVN enclave cannot derive a lower SVN's key")
	}

	rejects := []struct {
		name   string
		req    tee.KeyRequest
		wantIs error
		want   string
	}{
		{"product higher SVN", tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 3}, tee.ErrHigherSVN, "seal key for SVN 3, enclave is SVN 2"},
		{"product max SVN", tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 0xffff}, tee.ErrHigherSVN, "SVN 65535"},
		{"policy 0", tee.KeyRequest{Policy: 0}, nil, "unknown policy 0"},
		{"policy 3", tee.KeyRequest{Policy: 3}, nil, "unknown policy 3"},
	}
	for _, tc := range rejects {
		t.Run(tc.name, func(t *testing.T) {
			k, err := e.SealKey(tc.req)
			if err == nil {
				t.Fatalf("SealKey(%+v) = %x, want an error", tc.req, k)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %q", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// faultyEnclave is a tee.Enclave whose SealKey misbehaves, to reach Seal's
// and Unseal's error paths.
type faultyEnclave struct {
	tee.Enclave
	key []byte
	err error
}

func (e faultyEnclave) SealKey(tee.KeyRequest) ([]byte, error) { return e.key, e.err }

func TestSealRejectsBadKeys(t *testing.T) {
	f := newSealFixture(t)
	good := f.p1.NewEnclave(f.base)
	blob, err := tee.Seal(good, tee.SealUnique, []byte("x"), nil)
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("platform refused")
	cases := []struct {
		name   string
		e      faultyEnclave
		wantIs error
		want   string
	}{
		{"key error", faultyEnclave{Enclave: good, err: boom}, boom, "derive unique key: platform refused"},
		{"16-byte key", faultyEnclave{Enclave: good, key: make([]byte, 16)}, nil, "seal key is 16 bytes, want 32"},
		{"nil key", faultyEnclave{Enclave: good}, nil, "seal key is 0 bytes, want 32"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := tee.Seal(tc.e, tee.SealUnique, []byte("x"), nil)
			if err == nil {
				t.Fatalf("Seal succeeded: %x", out)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("Seal error %q is not %q", err, tc.wantIs)
			}
			if !strings.HasPrefix(err.Error(), "seal: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Seal error %q, want 'seal: ...%s'", err, tc.want)
			}
			if _, err := tee.Unseal(tc.e, blob, nil); err == nil || !strings.HasPrefix(err.Error(), "unseal: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unseal error %v, want 'unseal: ...%s'", err, tc.want)
			}
		})
	}
}

// FuzzUnseal checks that ParseSealedHeader and Unseal never panic on
// arbitrary bytes, and that Unseal only ever accepts the genuine blob with
// its genuine additional data.
func FuzzUnseal(f *testing.F) {
	fx := newSealFixture(f)
	e := fx.p1.NewEnclave(fx.base)
	plaintext := []byte("fuzz secret")
	ad := []byte("ad")
	unique, err := tee.Seal(e, tee.SealUnique, plaintext, ad)
	if err != nil {
		f.Fatal(err)
	}
	product, err := tee.Seal(e, tee.SealProduct, plaintext, ad)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(unique, ad)
	f.Add(product, ad)
	f.Add(unique, []byte{})
	f.Add(unique[:minBlobLen], ad)
	f.Add(flip(offPolicy)(unique), ad)
	f.Add(setByte(offSVN+1, 0xff)(product), ad)
	f.Add(flip(offCipher)(unique), ad)
	f.Add([]byte("TSLD"), ad)
	f.Add([]byte{}, []byte{})
	f.Fuzz(func(t *testing.T, blob, ad2 []byte) {
		h, herr := tee.ParseSealedHeader(blob)
		if herr == nil {
			if len(blob) < minBlobLen || string(blob[:4]) != "TSLD" {
				t.Fatalf("ParseSealedHeader accepted %d bytes starting %q", len(blob), blob[:min(4, len(blob))])
			}
			if h.Policy != tee.SealUnique && h.Policy != tee.SealProduct {
				t.Fatalf("ParseSealedHeader accepted policy %d", h.Policy)
			}
		}
		got, err := tee.Unseal(e, blob, ad2)
		if err != nil {
			return
		}
		if herr != nil {
			t.Fatalf("Unseal accepted a blob whose header does not parse: %v", herr)
		}
		if !(bytes.Equal(blob, unique) || bytes.Equal(blob, product)) || !bytes.Equal(ad2, ad) {
			t.Fatalf("Unseal accepted a blob it did not seal: %x (ad %x)", blob, ad2)
		}
		if !bytes.Equal(got, plaintext) {
			t.Fatalf("Unseal = %q, want %q", got, plaintext)
		}
	})
}
