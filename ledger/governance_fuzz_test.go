package ledger

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/teeup/teeup/tee"
)

// The governance payload decoders take untrusted bytes (the payloads of
// submitted transactions). They must never panic, and what they accept
// must re-encode to exactly the input.

func FuzzDecodeReleaseProposal(f *testing.F) {
	valid := proposalPayload(f, testRelease(f, "2.0.0", nil))
	f.Add(valid)
	f.Add(valid[:len(valid)/2])
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"manifest":{"version":"1.0.0"},"manifest":{}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		sr, err := DecodeReleaseProposal(b)
		if err != nil {
			return
		}
		// The canonical form decodes to the same manifest.
		again, err := json.Marshal(sr)
		if err != nil {
			t.Fatal(err)
		}
		sr2, err := DecodeReleaseProposal(again)
		if err != nil {
			if len(again) > MaxGovernancePayloadSize {
				return // escaping can grow the canonical form past the limit
			}
			t.Fatalf("re-encoded proposal does not decode: %v", err)
		}
		h1, err1 := ManifestHash(sr)
		h2, err2 := ManifestHash(sr2)
		if err1 != nil || err2 != nil || h1 != h2 {
			t.Fatalf("manifest hash changed across a round trip: %v %v", err1, err2)
		}
	})
}

func FuzzDecodeReleaseApproval(f *testing.F) {
	f.Add(EncodeReleaseApproval(ReleaseApproval{Version: "2.0.0", ManifestHash: Hash{1}}))
	f.Add(EncodeReleaseApproval(ReleaseApproval{Version: "2.0.0-rc.1"})[:10])
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeReleaseApproval(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeReleaseApproval(p), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

func FuzzDecodeUpgradeSchedule(f *testing.F) {
	f.Add(EncodeUpgradeSchedule(UpgradeSchedule{Version: "2.0.0", ActivationHeight: 50}))
	f.Add(EncodeUpgradeSchedule(UpgradeSchedule{Version: "2.0.0"}))
	f.Add([]byte{0, 0, 0, 5, '1', '.', '0', '.', '0'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeUpgradeSchedule(b)
		if err != nil {
			return
		}
		if p.ActivationHeight == 0 || !bytes.Equal(EncodeUpgradeSchedule(p), b) {
			t.Fatalf("accepted %+v, which does not round trip", p)
		}
	})
}

func FuzzDecodeUpgradeAbort(f *testing.F) {
	f.Add(EncodeUpgradeAbort(UpgradeAbort{Version: "2.0.0", Reason: "attestation failed"}))
	f.Add(EncodeUpgradeAbort(UpgradeAbort{Version: "2.0.0", Reason: "\xff"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeUpgradeAbort(b)
		if err != nil {
			return
		}
		if p.Reason == "" || !bytes.Equal(EncodeUpgradeAbort(p), b) {
			t.Fatalf("accepted %+v, which does not round trip", p)
		}
	})
}

func FuzzDecodeRollbackApproval(f *testing.F) {
	f.Add(EncodeRollbackApproval(RollbackApproval{From: "2.0.0", To: "1.0.0"}))
	f.Add(EncodeRollbackApproval(RollbackApproval{From: "1.0.0", To: "2.0.0"}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := DecodeRollbackApproval(b)
		if err != nil {
			return
		}
		if !bytes.Equal(EncodeRollbackApproval(p), b) {
			t.Fatal("re-encoding differs")
		}
	})
}

// FuzzDecodeGovernanceRecords covers the decoders of the records the
// ledger stores under g/ (its own bytes, but a damaged database must give
// errors, not panics).
func FuzzDecodeGovernanceRecords(f *testing.F) {
	f.Add(uint8(0), sampleGovState().encode())
	f.Add(uint8(0), (&govState{}).encode())
	f.Add(uint8(1), encodeReleaseRecord(&ReleaseRecord{Version: "2.0.0", Raw: proposalPayload(f, testRelease(f, "2.0.0", nil)), Approvers: []Address{{1}}}))
	f.Add(uint8(2), encodeAbortRecord(&AbortRecord{Version: "2.0.0", NodeMREnclave: tee.Measurement{2}, Reason: "r", Approvers: []Address{{1}}}))
	f.Add(uint8(3), encodeRollbackRecord(&RollbackRecord{From: "2.0.0", To: "1.0.0", Height: 3}))
	f.Fuzz(func(t *testing.T, which uint8, b []byte) {
		var enc []byte
		switch which % 4 {
		case 0:
			g, err := decodeGovState(b)
			if err != nil {
				return
			}
			enc = g.encode()
		case 1:
			r, err := decodeReleaseRecord(b)
			if err != nil {
				return
			}
			enc = encodeReleaseRecord(r)
		case 2:
			r, err := decodeAbortRecord(b)
			if err != nil {
				return
			}
			enc = encodeAbortRecord(r)
		case 3:
			r, err := decodeRollbackRecord(b)
			if err != nil {
				return
			}
			enc = encodeRollbackRecord(r)
		}
		if !bytes.Equal(enc, b) {
			t.Fatal("re-encoding differs")
		}
	})
}
