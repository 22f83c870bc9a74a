package sim_test

import (
	"bytes"
	"testing"

	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// Offsets in a local report, from the layout documented in enclave.go.
const (
	repOffVersion  = 4
	repOffIdentity = 5
	repOffSigner   = repOffIdentity + 32
	repOffProduct  = repOffIdentity + 64
	repOffSVN      = repOffIdentity + 66
	repOffDebug    = repOffIdentity + 68
	repOffData     = repOffIdentity + tee.IdentitySize
	repOffTarget   = repOffData + tee.ReportDataSize
	repOffMAC      = repOffTarget + tee.MeasurementSize
	repLen         = repOffMAC + 32
)

func TestLocalReportRoundTrip(t *testing.T) {
	f := newFixture(t)
	debugA := f.idA
	debugA.Debug = true
	cases := []struct {
		name             string
		maker, verifier  *sim.Enclave
		data             tee.ReportData
		wantMakerID      tee.Identity
		wantTargetUnique tee.Measurement
	}{
		{"A for B", f.p1.NewEnclave(f.idA), f.p1.NewEnclave(f.idB), reportData(t, "nonce"), f.idA, f.idB.UniqueID},
		{"B for A", f.p1.NewEnclave(f.idB), f.p1.NewEnclave(f.idA), tee.HashReportData("d", []byte("x")), f.idB, f.idA.UniqueID},
		{"self report", f.p1.NewEnclave(f.idA), f.p1.NewEnclave(f.idA), tee.ReportData{}, f.idA, f.idA.UniqueID},
		{"debug maker", f.p2.NewEnclave(debugA), f.p2.NewEnclave(f.idB), reportData(t, "dbg"), debugA, f.idB.UniqueID},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := tc.maker.LocalReport(targetInfo(t, tc.verifier), tc.data)
			if err != nil {
				t.Fatalf("LocalReport: %v", err)
			}
			if len(raw) != repLen {
				t.Fatalf("report is %d bytes, want %d", len(raw), repLen)
			}
			r, err := tc.verifier.VerifyLocalReport(raw)
			if err != nil {
				t.Fatalf("VerifyLocalReport: %v", err)
			}
			if r.Identity != tc.wantMakerID {
				t.Errorf("identity = %+v, want %+v", r.Identity, tc.wantMakerID)
			}
			if r.Data != tc.data {
				t.Errorf("data = %x, want %x", r.Data, tc.data)
			}
			if r.Target != tc.wantTargetUnique {
				t.Errorf("target = %s, want %s", r.Target, tc.wantTargetUnique)
			}
			d, err := sim.DecodeReport(raw)
			if err != nil || d != r {
				t.Errorf("DecodeReport = %+v, %v; want %+v", d, err, r)
			}
		})
	}
}

func TestVerifyLocalReportRejects(t *testing.T) {
	f := newFixture(t)
	a := f.p1.NewEnclave(f.idA)
	b := f.p1.NewEnclave(f.idB)
	good, err := a.LocalReport(targetInfo(t, b), reportData(t, "challenge"))
	if err != nil {
		t.Fatal(err)
	}
	// A report that b made for itself, to splice its MAC.
	forB, err := b.LocalReport(targetInfo(t, b), reportData(t, "challenge"))
	if err != nil {
		t.Fatal(err)
	}
	const macErr = "MAC does not verify (made on another platform"
	cases := []struct {
		name     string
		verifier *sim.Enclave
		raw      []byte
		want     string
	}{
		{"verified on another platform", f.p2.NewEnclave(f.idB), good, macErr},
		{"verified on a foreign-root platform", f.foreign.NewEnclave(f.idB), good, macErr},
		{"targeted at another enclave", f.p1.NewEnclave(f.idA), good,
			"made for enclave " + f.idB.UniqueID.String() + ", this enclave is " + f.idA.UniqueID.String()},
		{"tampered MRENCLAVE", b, flipAt(good, repOffIdentity), macErr},
		{"tampered MRSIGNER", b, flipAt(good, repOffSigner+31), macErr},
		{"tampered product id", b, flipAt(good, repOffProduct+1), macErr},
		{"tampered svn", b, flipAt(good, repOffSVN+1), macErr},
		{"tampered debug flag set", b, setAt(good, repOffDebug, 1), macErr},
		{"debug flag not a bool", b, setAt(good, repOffDebug, 2), "debug flag 2 is neither 0 nor 1"},
		{"tampered data first byte", b, flipAt(good, repOffData), macErr},
		{"tampered data last byte", b, flipAt(good, repOffTarget-1), macErr},
		{"tampered target", b, flipAt(good, repOffTarget), "made for enclave"},
		{"retargeted with target's own MRENCLAVE swapped in", f.p1.NewEnclave(f.idA), append(append(bytes.Clone(good[:repOffTarget]), f.idA.UniqueID[:]...), good[repOffMAC:]...), macErr},
		{"tampered MAC first byte", b, flipAt(good, repOffMAC), macErr},
		{"tampered MAC last byte", b, flipAt(good, -1), macErr},
		{"MAC from another report", b, append(bytes.Clone(good[:repOffMAC]), forB[repOffMAC:]...), macErr},
		{"empty", b, nil, "local report: 0 bytes, want 202"},
		{"one byte short", b, good[:len(good)-1], "201 bytes, want 202"},
		{"one byte long", b, append(bytes.Clone(good), 0), "203 bytes, want 202"},
		{"bad magic", b, flipAt(good, 0), "bad magic"},
		{"quote magic", b, append([]byte("TQOT"), good[4:]...), `bad magic "TQOT"`},
		{"version 2", b, setAt(good, repOffVersion, 2), "unsupported version 2"},
		{"version 0", b, setAt(good, repOffVersion, 0), "unsupported version 0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, err := tc.verifier.VerifyLocalReport(tc.raw)
			wantErr(t, err, tc.want)
			if r != (tee.Report{}) {
				t.Fatalf("rejected report returned content %+v", r)
			}
			if !bytes.HasPrefix([]byte(err.Error()), []byte("verify local report")) {
				t.Fatalf("error %q lacks the 'verify local report' context", err)
			}
		})
	}
	// Nothing lost: the genuine report still verifies.
	if _, err := b.VerifyLocalReport(good); err != nil {
		t.Fatalf("genuine report no longer verifies: %v", err)
	}
}

func TestLocalReportRejectsBadTargetInfo(t *testing.T) {
	f := newFixture(t)
	a := f.p1.NewEnclave(f.idA)
	good := targetInfo(t, f.p1.NewEnclave(f.idB))
	cases := []struct {
		name string
		ti   []byte
		want string
	}{
		{"empty", nil, "target info: 0 bytes, want 38"},
		{"one short", good[:len(good)-1], "37 bytes, want 38"},
		{"one long", append(bytes.Clone(good), 0), "39 bytes, want 38"},
		{"bad magic", flipAt(good, 1), "bad magic"},
		{"version 1", setAt(good, 4, 1), "unsupported version 1"},
		{"unknown attribute", setAt(good, len(good)-1, 0x03), "unknown attribute bits 0x02"},
		{"a whole report", func() []byte {
			r, err := a.LocalReport(good, tee.ReportData{})
			if err != nil {
				t.Fatal(err)
			}
			return r
		}(), "202 bytes, want 38"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := a.LocalReport(tc.ti, reportData(t, "x"))
			wantErr(t, err, tc.want)
			if raw != nil {
				t.Fatalf("rejected target info still produced %d bytes", len(raw))
			}
			m, err := sim.DecodeTargetInfo(tc.ti)
			wantErr(t, err, tc.want)
			if m != (sim.Target{}) {
				t.Fatalf("DecodeTargetInfo returned %+v on error", m)
			}
		})
	}
}

func TestTargetInfo(t *testing.T) {
	f := newFixture(t)
	ti := targetInfo(t, f.p1.NewEnclave(f.idA))
	if !bytes.Equal(ti, sim.TargetInfoFor(sim.Target{MREnclave: f.idA.UniqueID})) {
		t.Fatal("TargetInfo differs from TargetInfoFor(MRENCLAVE)")
	}
	// Target info is not platform specific: it only names the enclave.
	if !bytes.Equal(ti, targetInfo(t, f.p2.NewEnclave(f.idA))) {
		t.Fatal("target info of the same enclave differs between platforms")
	}
	m, err := sim.DecodeTargetInfo(ti)
	if want := (sim.Target{MREnclave: f.idA.UniqueID}); err != nil || m != want {
		t.Fatalf("DecodeTargetInfo = %+v, %v; want %+v", m, err, want)
	}
	debugA := f.idA
	debugA.Debug = true
	dti := targetInfo(t, f.p1.NewEnclave(debugA))
	if bytes.Equal(dti, ti) {
		t.Fatal("a debug enclave has the target info of the production enclave")
	}
	m, err = sim.DecodeTargetInfo(dti)
	if want := (sim.Target{MREnclave: f.idA.UniqueID, Debug: true}); err != nil || m != want {
		t.Fatalf("DecodeTargetInfo(debug) = %+v, %v; want %+v", m, err, want)
	}
}

// TestReportKeyCoversDebug: as in SGX, the report key derives from the
// target's attributes too, so a debug build with the production
// measurement cannot check reports made for the production enclave (and
// could not otherwise read what they bind), nor the other way round.
func TestReportKeyCoversDebug(t *testing.T) {
	f := newFixture(t)
	maker := f.p1.NewEnclave(f.idB)
	prod := f.p1.NewEnclave(f.idA)
	debugA := f.idA
	debugA.Debug = true
	debug := f.p1.NewEnclave(debugA)
	cases := []struct {
		name             string
		target, verifier *sim.Enclave
	}{
		{"made for production, checked by debug", prod, debug},
		{"made for debug, checked by production", debug, prod},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := maker.LocalReport(targetInfo(t, tc.target), reportData(t, "secret binding"))
			if err != nil {
				t.Fatal(err)
			}
			_, err = tc.verifier.VerifyLocalReport(raw)
			wantErr(t, err, "MAC does not verify")
			if _, err := tc.target.VerifyLocalReport(raw); err != nil {
				t.Fatalf("the enclave the report was made for rejects it: %v", err)
			}
		})
	}
}

func TestEnclaveAccessors(t *testing.T) {
	f := newFixture(t)
	e := f.p1.NewEnclave(f.idA)
	if e.Identity() != f.idA || e.Platform() != f.p1 || !e.Simulated() {
		t.Fatalf("accessors: identity %+v platform %p simulated %t", e.Identity(), e.Platform(), e.Simulated())
	}
}
