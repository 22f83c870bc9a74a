//go:build ego

package ego

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/edgelesssys/ego/attestation"
	"github.com/edgelesssys/ego/attestation/tcbstatus"

	"github.com/teeup/teeup/tee"
)

// fakeSGX models the EGo calls: a self report, a raw local report whose
// body starts with CPUSVN, and EGETKEY as HMAC(secret, identity, request).
type fakeSGX struct {
	self    attestation.Report
	selfErr error
	raw     []byte
	rawErr  error
	secret  []byte
	keyLen  int   // 0 means 16
	keyErr  error // returned by getSealKey
	zeroKey bool

	mu       sync.Mutex
	requests [][]byte
	local    [][2][]byte // (data, target) of getLocalReport calls with a target
	remote   [][]byte
}

func seq(n int, start byte) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = start + byte(i)
	}
	return b
}

func newFakeSGX() *fakeSGX {
	raw := make([]byte, oeReportHeaderSize+432)
	copy(raw[oeReportHeaderSize:], seq(cpuSVNSize, 0xc0))
	return &fakeSGX{
		self: attestation.Report{
			UniqueID:        seq(32, 1),
			SignerID:        seq(32, 0x40),
			ProductID:       append([]byte{0x34, 0x12}, make([]byte, 14)...),
			SecurityVersion: 5,
			Debug:           false,
		},
		raw:    raw,
		secret: []byte("fake fused key"),
	}
}

func (f *fakeSGX) api() platformAPI {
	return platformAPI{
		getSelfReport: func() (attestation.Report, error) { return f.self, f.selfErr },
		getLocalReport: func(data, target []byte) ([]byte, error) {
			if f.rawErr != nil {
				return nil, f.rawErr
			}
			if target == nil {
				return bytes.Clone(f.raw), nil
			}
			f.mu.Lock()
			f.local = append(f.local, [2][]byte{bytes.Clone(data), bytes.Clone(target)})
			f.mu.Unlock()
			return append([]byte("REPORT"), data...), nil
		},
		verifyLocalReport: func(r []byte) (attestation.Report, error) {
			if !bytes.HasPrefix(r, []byte("REPORT")) {
				return attestation.Report{}, errors.New("OE_VERIFY_FAILED")
			}
			out := f.self
			out.Data = bytes.Clone(r[len("REPORT"):])
			return out, nil
		},
		getRemoteReport: func(data []byte) ([]byte, error) {
			f.mu.Lock()
			f.remote = append(f.remote, bytes.Clone(data))
			f.mu.Unlock()
			return append([]byte("QUOTE"), data...), nil
		},
		getSealKey: func(req []byte) ([]byte, error) {
			f.mu.Lock()
			f.requests = append(f.requests, bytes.Clone(req))
			f.mu.Unlock()
			if f.keyErr != nil {
				return nil, f.keyErr
			}
			n := f.keyLen
			if n == 0 {
				n = hwSealKeySize
			}
			if f.zeroKey {
				return make([]byte, n), nil
			}
			m := hmac.New(sha256.New, f.secret)
			m.Write(f.self.UniqueID)
			m.Write(req)
			return m.Sum(nil)[:n], nil
		},
	}
}

func (f *fakeSGX) lastRequest(t *testing.T) []byte {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.requests) == 0 {
		t.Fatal("no key request reached the platform")
	}
	return f.requests[len(f.requests)-1]
}

func mustEnclave(t *testing.T, f *fakeSGX) *Enclave {
	t.Helper()
	e, err := newEnclave(f.api())
	if err != nil {
		t.Fatalf("newEnclave: %v", err)
	}
	return e
}

// TestNewOutsideEnclave runs EGo's real calls: this test process is not an
// enclave, so New must refuse and say why.
func TestNewOutsideEnclave(t *testing.T) {
	e, err := New()
	if err == nil {
		t.Fatalf("New succeeded outside an enclave: %+v", e.Identity())
	}
	for _, want := range []string{"not running inside an SGX enclave", "all-zero key", "OE_UNSUPPORTED"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

// TestRealSealKeyOutsideEnclaveRefused shows the hazard New guards against:
// EGo's GetSealKey returns an all-zero key without an error here, and
// SealKey refuses it.
func TestRealSealKeyOutsideEnclaveRefused(t *testing.T) {
	e := &Enclave{api: egoAPI(), identity: tee.Identity{SecurityVersion: 1}}
	for _, p := range []tee.SealPolicy{tee.SealUnique, tee.SealProduct} {
		k, err := e.SealKey(tee.KeyRequest{Policy: p})
		if err == nil {
			t.Fatalf("SealKey(%s) outside an enclave = %x", p, k)
		}
		if !strings.Contains(err.Error(), "all-zero key") {
			t.Fatalf("error %q does not mention the all-zero key", err)
		}
	}
}

func TestNewIdentity(t *testing.T) {
	f := newFakeSGX()
	f.self.Debug = true
	e := mustEnclave(t, f)
	var want tee.Identity
	copy(want.UniqueID[:], seq(32, 1))
	copy(want.SignerID[:], seq(32, 0x40))
	want.ProductID = 0x1234
	want.SecurityVersion = 5
	want.Debug = true
	if e.Identity() != want {
		t.Fatalf("identity = %+v, want %+v", e.Identity(), want)
	}
	if e.Simulated() {
		t.Fatal("Simulated() = true")
	}
	if !bytes.Equal(e.cpuSVN[:], seq(cpuSVNSize, 0xc0)) {
		t.Fatalf("CPUSVN = %x, want the first 16 bytes of the report body", e.cpuSVN)
	}
}

func TestNewRejects(t *testing.T) {
	boom := errors.New("OE_UNSUPPORTED")
	cases := []struct {
		name   string
		mutate func(*fakeSGX)
		wantIs error
		want   string
	}{
		{"self report fails", func(f *fakeSGX) { f.selfErr = boom }, boom, "not running inside an SGX enclave"},
		{"short unique id", func(f *fakeSGX) { f.self.UniqueID = f.self.UniqueID[:31] }, nil, "unique id is 31 bytes, want 32"},
		{"missing signer id", func(f *fakeSGX) { f.self.SignerID = nil }, nil, "signer id is 0 bytes, want 32"},
		{"one-byte product id", func(f *fakeSGX) { f.self.ProductID = []byte{1} }, nil, "product id is 1 bytes, want at least 2"},
		{"product id beyond 16 bits", func(f *fakeSGX) { f.self.ProductID[15] = 1 }, nil, "does not fit SGX's 16-bit ISVPRODID"},
		{"svn beyond 16 bits", func(f *fakeSGX) { f.self.SecurityVersion = 1 << 16 }, nil, "security version 65536 does not fit"},
		{"raw report fails", func(f *fakeSGX) { f.rawErr = boom }, boom, "report for CPUSVN"},
		{"raw report too short", func(f *fakeSGX) { f.raw = f.raw[:oeReportHeaderSize+cpuSVNSize-1] }, nil, "31 bytes, too short"},
		{"all-zero seal key", func(f *fakeSGX) { f.zeroKey = true }, nil, "all-zero key"},
		{"seal key fails", func(f *fakeSGX) { f.keyErr = boom }, boom, "seal key check"},
		{"seal key of 32 bytes", func(f *fakeSGX) { f.keyLen = 32 }, nil, "returned 32 bytes, want 16"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSGX()
			tc.mutate(f)
			e, err := newEnclave(f.api())
			if err == nil {
				t.Fatalf("newEnclave accepted it: %+v", e.Identity())
			}
			if e != nil {
				t.Fatal("refused newEnclave returned an enclave")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestSealKeyDefaultMasks(t *testing.T) {
	// Values of OE_SEALKEY_DEFAULT_FLAGSMASK / MISCMASK / XFRMMASK.
	if sealKeyDefaultFlagMask != 0xFF0000000000000B {
		t.Errorf("flags mask %#x, want 0xFF0000000000000B", uint64(sealKeyDefaultFlagMask))
	}
	if sealKeyDefaultMiscMask != 0xF0000000 {
		t.Errorf("misc mask %#x, want 0xF0000000", uint32(sealKeyDefaultMiscMask))
	}
	if sealKeyDefaultXFRMMask != 0 {
		t.Errorf("xfrm mask %#x, want 0", sealKeyDefaultXFRMMask)
	}
}

func TestKeyRequestLayout(t *testing.T) {
	kr := keyRequest{KeyName: 0x0102, KeyPolicy: 0x0304, ISVSVN: 0x0506, FlagsMask: 0x1112131415161718, XFRMMask: 0x2122232425262728, MiscMask: 0x31323334}
	copy(kr.CPUSVN[:], seq(16, 0xa0))
	copy(kr.KeyID[:], seq(32, 0x50))
	b := kr.marshal()
	if len(b) != 512 {
		t.Fatalf("%d bytes, want 512", len(b))
	}
	le16 := func(off int) uint16 { return binary.LittleEndian.Uint16(b[off:]) }
	le32 := func(off int) uint32 { return binary.LittleEndian.Uint32(b[off:]) }
	le64 := func(off int) uint64 { return binary.LittleEndian.Uint64(b[off:]) }
	// Offsets of sgx_key_request_t fields.
	checks := []struct {
		name      string
		got, want uint64
	}{
		{"key_name@0", uint64(le16(0)), 0x0102},
		{"key_policy@2", uint64(le16(2)), 0x0304},
		{"isv_svn@4", uint64(le16(4)), 0x0506},
		{"reserved1@6", uint64(le16(6)), 0},
		{"attribute_mask.flags@24", le64(24), 0x1112131415161718},
		{"attribute_mask.xfrm@32", le64(32), 0x2122232425262728},
		{"misc_mask@72", uint64(le32(72)), 0x31323334},
		{"config_svn@76", uint64(le16(76)), 0},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %#x, want %#x", c.name, c.got, c.want)
		}
	}
	if !bytes.Equal(b[8:24], seq(16, 0xa0)) {
		t.Errorf("cpu_svn@8 = %x", b[8:24])
	}
	if !bytes.Equal(b[40:72], seq(32, 0x50)) {
		t.Errorf("key_id@40 = %x", b[40:72])
	}
	if !isZero(b[76:]) {
		t.Error("reserved tail is not zero")
	}
}

func TestSealKeyRequest(t *testing.T) {
	f := newFakeSGX()
	e := mustEnclave(t, f)
	var keyID [32]byte
	copy(keyID[:], seq(32, 0x70))
	cases := []struct {
		name       string
		req        tee.KeyRequest
		wantPolicy uint16
		wantSVN    uint16
	}{
		{"unique ignores SVN", tee.KeyRequest{Policy: tee.SealUnique, SecurityVersion: 5, KeyID: keyID}, keyPolicyMRENCLAVE, 0},
		{"unique with higher SVN is still ignored", tee.KeyRequest{Policy: tee.SealUnique, SecurityVersion: 9, KeyID: keyID}, keyPolicyMRENCLAVE, 0},
		{"product own SVN", tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 5, KeyID: keyID}, keyPolicyMRSIGNER, 5},
		{"product lower SVN", tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 2, KeyID: keyID}, keyPolicyMRSIGNER, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			k, err := e.SealKey(tc.req)
			if err != nil {
				t.Fatalf("SealKey: %v", err)
			}
			if len(k) != tee.SealKeySize {
				t.Fatalf("key is %d bytes, want %d", len(k), tee.SealKeySize)
			}
			b := f.lastRequest(t)
			if len(b) != keyRequestSize {
				t.Fatalf("request is %d bytes", len(b))
			}
			if got := binary.LittleEndian.Uint16(b[0:]); got != keyNameSeal {
				t.Errorf("key name %d, want SEAL (4)", got)
			}
			if got := binary.LittleEndian.Uint16(b[2:]); got != tc.wantPolicy {
				t.Errorf("key policy %d, want %d", got, tc.wantPolicy)
			}
			if got := binary.LittleEndian.Uint16(b[4:]); got != tc.wantSVN {
				t.Errorf("ISVSVN %d, want %d", got, tc.wantSVN)
			}
			if !bytes.Equal(b[8:24], seq(cpuSVNSize, 0xc0)) {
				t.Errorf("CPUSVN %x, want the self report's", b[8:24])
			}
			if binary.LittleEndian.Uint64(b[24:]) != sealKeyDefaultFlagMask || binary.LittleEndian.Uint64(b[32:]) != sealKeyDefaultXFRMMask ||
				binary.LittleEndian.Uint32(b[72:]) != sealKeyDefaultMiscMask {
				t.Error("attribute masks are not Open Enclave's defaults")
			}
			if !bytes.Equal(b[40:72], keyID[:]) {
				t.Errorf("key id %x, want %x", b[40:72], keyID)
			}
		})
	}
}

func TestSealKeyExpansion(t *testing.T) {
	f := newFakeSGX()
	e := mustEnclave(t, f)
	get := func(req tee.KeyRequest) []byte {
		t.Helper()
		k, err := e.SealKey(req)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	a := get(tee.KeyRequest{Policy: tee.SealUnique})
	if !bytes.Equal(a, get(tee.KeyRequest{Policy: tee.SealUnique})) {
		t.Fatal("SealKey is not deterministic")
	}
	hw, err := f.api().getSealKey(f.lastRequest(t))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(a, hw) {
		t.Fatal("the hardware key appears in the derived key")
	}
	other := tee.KeyRequest{Policy: tee.SealUnique}
	other.KeyID[31] = 1
	if bytes.Equal(a, get(other)) || bytes.Equal(a, get(tee.KeyRequest{Policy: tee.SealProduct})) {
		t.Fatal("different requests gave the same key")
	}
}

func TestSealKeyRejects(t *testing.T) {
	boom := errors.New("OE_INVALID_PARAMETER")
	cases := []struct {
		name     string
		mutate   func(*fakeSGX)
		req      tee.KeyRequest
		wantIs   error
		want     string
		platform bool // the request reaches the platform
	}{
		{"product higher SVN", nil, tee.KeyRequest{Policy: tee.SealProduct, SecurityVersion: 6}, tee.ErrHigherSVN, "seal key for SVN 6, enclave is SVN 5", false},
		{"unknown policy 0", nil, tee.KeyRequest{}, nil, "unknown policy 0", false},
		{"unknown policy 7", nil, tee.KeyRequest{Policy: 7}, nil, "unknown policy 7", false},
		{"platform error", func(f *fakeSGX) { f.keyErr = boom }, tee.KeyRequest{Policy: tee.SealProduct}, boom, "seal key (product)", true},
		{"all-zero key", func(f *fakeSGX) { f.zeroKey = true }, tee.KeyRequest{Policy: tee.SealUnique}, nil, "all-zero key", true},
		{"short key", func(f *fakeSGX) { f.keyLen = 8 }, tee.KeyRequest{Policy: tee.SealUnique}, nil, "returned 8 bytes, want 16", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeSGX()
			e := mustEnclave(t, f)
			if tc.mutate != nil {
				tc.mutate(f)
			}
			f.mu.Lock()
			before := len(f.requests)
			f.mu.Unlock()
			k, err := e.SealKey(tc.req)
			if err == nil {
				t.Fatalf("SealKey = %x, want an error", k)
			}
			if k != nil {
				t.Fatal("failed SealKey returned key bytes")
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Fatalf("error %q is not %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			f.mu.Lock()
			reached := len(f.requests) > before
			f.mu.Unlock()
			if reached != tc.platform {
				t.Fatalf("request reached the platform: %t, want %t", reached, tc.platform)
			}
		})
	}
}

func TestSealUnsealOnFakeHardware(t *testing.T) {
	f := newFakeSGX()
	e := mustEnclave(t, f)
	for _, p := range []tee.SealPolicy{tee.SealUnique, tee.SealProduct} {
		blob, err := tee.Seal(e, p, []byte("ledger key"), []byte("ad"))
		if err != nil {
			t.Fatalf("Seal(%s): %v", p, err)
		}
		got, err := tee.Unseal(e, blob, []byte("ad"))
		if err != nil || string(got) != "ledger key" {
			t.Fatalf("Unseal(%s) = %q, %v", p, got, err)
		}
		// Another CPU (other fused secret) cannot unseal.
		g := newFakeSGX()
		g.secret = []byte("another cpu")
		if _, err := tee.Unseal(mustEnclave(t, g), blob, []byte("ad")); !errors.Is(err, tee.ErrSealedAuth) {
			t.Fatalf("Unseal(%s) on another CPU: %v, want ErrSealedAuth", p, err)
		}
	}
}

func TestLocalReport(t *testing.T) {
	f := newFakeSGX()
	e := mustEnclave(t, f)
	ti, err := e.TargetInfo()
	if err != nil || !bytes.Equal(ti, f.raw) {
		t.Fatalf("TargetInfo = %x, %v; want the untargeted report", ti, err)
	}
	data := tee.HashReportData("test", []byte("x"))
	raw, err := e.LocalReport([]byte("target"), data)
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	call := f.local[len(f.local)-1]
	f.mu.Unlock()
	if !bytes.Equal(call[0], data[:]) || string(call[1]) != "target" {
		t.Fatalf("GetLocalReport called with data %x target %q", call[0], call[1])
	}
	r, err := e.VerifyLocalReport(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.Data != data || r.Identity != e.Identity() || r.Target != e.Identity().UniqueID {
		t.Fatalf("report %+v: want own identity, data and target", r)
	}

	q, err := e.Quote(data)
	if err != nil || !bytes.Equal(q, append([]byte("QUOTE"), data[:]...)) {
		t.Fatalf("Quote = %x, %v", q, err)
	}
}

func TestLocalReportRejects(t *testing.T) {
	f := newFakeSGX()
	e := mustEnclave(t, f)
	if _, err := e.LocalReport(nil, tee.ReportData{}); err == nil || !strings.Contains(err.Error(), "empty target info") {
		t.Fatalf("LocalReport with no target: %v", err)
	}
	cases := []struct {
		name   string
		mutate func(*fakeSGX)
		raw    []byte
		want   string
	}{
		{"empty", nil, nil, "empty report"},
		{"platform rejects", nil, []byte("forged"), "OE_VERIFY_FAILED"},
		{"report data too long", nil, append([]byte("REPORT"), make([]byte, 65)...), "report data is 65 bytes, want at most 64"},
		{"bad identity", func(f *fakeSGX) { f.self.UniqueID = nil }, []byte("REPORT"), "unique id is 0 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mutate != nil {
				tc.mutate(f)
				defer func() { f.self = newFakeSGX().self }()
			}
			r, err := e.VerifyLocalReport(tc.raw)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ego: verify local report") {
				t.Fatalf("VerifyLocalReport error %v, want %q", err, tc.want)
			}
			if r != (tee.Report{}) {
				t.Fatalf("rejected report returned %+v", r)
			}
		})
	}
}

func TestVerifyQuote(t *testing.T) {
	good := newFakeSGX().self
	good.Data = []byte("quoted data")
	boom := errors.New("OE_QUOTE_VERIFICATION_ERROR")
	outdated := good
	outdated.TCBStatus = tcbstatus.OutOfDate
	cases := []struct {
		name  string
		opts  VerifierOptions
		quote []byte
		rep   attestation.Report
		err   error
		want  string // "" means accepted
	}{
		{"up to date", VerifierOptions{}, []byte("q"), good, nil, ""},
		{"TCB out of date refused", VerifierOptions{}, []byte("q"), outdated, attestation.ErrTCBLevelInvalid, "platform TCB level is OutOfDate"},
		{"TCB out of date allowed", VerifierOptions{AllowTCBLevelInvalid: true}, []byte("q"), outdated, attestation.ErrTCBLevelInvalid, ""},
		{"verification error", VerifierOptions{AllowTCBLevelInvalid: true}, []byte("q"), attestation.Report{}, boom, "OE_QUOTE_VERIFICATION_ERROR"},
		{"empty quote", VerifierOptions{}, nil, good, nil, "empty quote"},
		{"malformed identity", VerifierOptions{}, []byte("q"), attestation.Report{UniqueID: []byte{1}}, nil, "unique id is 1 bytes"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := &Verifier{opts: tc.opts, verify: func([]byte) (attestation.Report, error) { return tc.rep, tc.err }}
			r, err := v.VerifyQuote(tc.quote)
			if tc.want != "" {
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("VerifyQuote error %v, want %q", err, tc.want)
				}
				if tc.err != nil && !errors.Is(err, tc.err) {
					t.Fatalf("error %q does not wrap %v", err, tc.err)
				}
				if r != (tee.Report{}) {
					t.Fatalf("rejected quote returned %+v", r)
				}
				return
			}
			if err != nil {
				t.Fatalf("VerifyQuote: %v", err)
			}
			id, _ := identityFromReport(tc.rep)
			want := tee.Report{Identity: id}
			copy(want.Data[:], tc.rep.Data)
			if r != want {
				t.Fatalf("report %+v, want %+v (zero target)", r, want)
			}
		})
	}
	if NewVerifier(VerifierOptions{}).verify == nil {
		t.Fatal("NewVerifier has no verification function")
	}
}
