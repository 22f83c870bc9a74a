package release

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestVerifyThreshold(t *testing.T) {
	keys := testKeys(4)
	members, outsider := keys[:3], keys[3]
	msg := []byte("a message")
	other := []byte("another message")
	corrupt := func(s Signature) Signature {
		b, _ := hex.DecodeString(s.Sig)
		b[10] ^= 1
		s.Sig = hex.EncodeToString(b)
		return s
	}
	upper := func(s Signature) Signature {
		s.Key = strings.ToUpper(s.Key)
		return s
	}
	tooMany := make([]Signature, MaxSignatures+1)
	for i := range tooMany {
		tooMany[i] = sigBy(members[0], msg)
	}
	cases := []struct {
		name      string
		group     Group
		sigs      []Signature
		wantIs    error // nil: no errors.Is check
		threshold *ThresholdError
		wantText  string // "" means the set must verify
	}{
		{name: "2 of 3 with t=2", group: groupOf(members, 2), sigs: []Signature{sigBy(members[0], msg), sigBy(members[2], msg)}},
		{name: "3 of 3 with t=3", group: groupOf(members, 3), sigs: []Signature{sigBy(members[2], msg), sigBy(members[1], msg), sigBy(members[0], msg)}},
		{name: "3 of 3 with t=2", group: groupOf(members, 2), sigs: []Signature{sigBy(members[0], msg), sigBy(members[1], msg), sigBy(members[2], msg)}},
		{name: "group key in upper case", group: Group{Keys: []string{strings.ToUpper(pubHex(members[0]))}, Threshold: 1}, sigs: []Signature{sigBy(members[0], msg)}},
		{name: "duplicate with a valid second member", group: groupOf(members, 2), sigs: []Signature{sigBy(members[0], msg), sigBy(members[0], msg), sigBy(members[1], msg)}},

		{name: "no signatures", group: groupOf(members, 1), sigs: nil, threshold: &ThresholdError{0, 1}, wantText: "0 of 1 required signatures"},
		{name: "fewer than threshold", group: groupOf(members, 2), sigs: []Signature{sigBy(members[1], msg)}, threshold: &ThresholdError{1, 2}, wantText: "1 of 2 required signatures"},
		{name: "2 of 3 with t=3", group: groupOf(members, 3), sigs: []Signature{sigBy(members[0], msg), sigBy(members[1], msg)}, threshold: &ThresholdError{2, 3}, wantText: "2 of 3 required signatures"},
		{name: "duplicate counted once", group: groupOf(members, 2), sigs: []Signature{sigBy(members[0], msg), sigBy(members[0], msg)}, threshold: &ThresholdError{1, 2}, wantText: "1 of 2 required signatures"},
		{name: "duplicate in other hex case counted once", group: groupOf(members, 2), sigs: []Signature{sigBy(members[0], msg), upper(sigBy(members[0], msg))}, threshold: &ThresholdError{1, 2}, wantText: "1 of 2 required signatures"},
		{name: "outsider signature", group: groupOf(members, 1), sigs: []Signature{sigBy(members[0], msg), sigBy(outsider, msg)}, wantIs: ErrNotMember,
			wantText: "signed by " + pubHex(outsider) + ", which is not a member of the group"},
		{name: "outsider only", group: groupOf(members, 1), sigs: []Signature{sigBy(outsider, msg)}, wantIs: ErrNotMember, wantText: "not a member"},
		{name: "corrupted signature", group: groupOf(members, 1), sigs: []Signature{sigBy(members[1], msg), corrupt(sigBy(members[0], msg))}, wantIs: ErrBadSignature,
			wantText: "signature by member " + pubHex(members[0])},
		{name: "member signed another message", group: groupOf(members, 1), sigs: []Signature{sigBy(members[0], other)}, wantIs: ErrBadSignature, wantText: "does not verify"},
		{name: "valid and invalid by one member", group: groupOf(members, 1), sigs: []Signature{sigBy(members[0], msg), sigBy(members[0], other)}, wantIs: ErrBadSignature, wantText: "does not verify"},
		{name: "key not hex", group: groupOf(members, 1), sigs: []Signature{{Key: "zz", Sig: sigBy(members[0], msg).Sig}}, wantIs: ErrBadSignature, wantText: "not hex"},
		{name: "key too short", group: groupOf(members, 1), sigs: []Signature{{Key: "abcd", Sig: sigBy(members[0], msg).Sig}}, wantIs: ErrBadSignature, wantText: "2 bytes, want 32"},
		{name: "signature not hex", group: groupOf(members, 1), sigs: []Signature{{Key: pubHex(members[0]), Sig: "xyz"}}, wantIs: ErrBadSignature, wantText: "not hex"},
		{name: "signature truncated", group: groupOf(members, 1), sigs: []Signature{{Key: pubHex(members[0]), Sig: sigBy(members[0], msg).Sig[:126]}}, wantIs: ErrBadSignature, wantText: "63 bytes, want 64"},
		{name: "too many signatures", group: groupOf(members, 1), sigs: tooMany, wantText: "at most 256"},
		{name: "invalid group: threshold 0", group: groupOf(members, 0), sigs: []Signature{sigBy(members[0], msg)}, wantText: "threshold 0 is not between 1 and the 3 keys"},
		{name: "invalid group: no keys", group: Group{Threshold: 1}, sigs: []Signature{sigBy(members[0], msg)}, wantText: "group has no keys"},
		{name: "invalid group: key listed twice", group: Group{Keys: []string{pubHex(members[0]), pubHex(members[0])}, Threshold: 2}, sigs: []Signature{sigBy(members[0], msg)}, wantText: "twice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.group.VerifyThreshold(msg, tc.sigs)
			if tc.wantText == "" {
				if err != nil {
					t.Fatalf("VerifyThreshold: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("VerifyThreshold succeeded, want error containing %q", tc.wantText)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q does not contain %q", err, tc.wantText)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("error %q is not %v", err, tc.wantIs)
			}
			if tc.threshold != nil {
				var te *ThresholdError
				if !errors.As(err, &te) || *te != *tc.threshold {
					t.Errorf("error %q: want ThresholdError %+v", err, *tc.threshold)
				}
			}
		})
	}
}

func TestGroupContains(t *testing.T) {
	keys := testKeys(3)
	g := Group{Keys: []string{pubHex(keys[0]), strings.ToUpper(pubHex(keys[1]))}, Threshold: 1}
	for i, want := range []bool{true, true, false} {
		if got := g.Contains(keys[i].Public().(ed25519.PublicKey)); got != want {
			t.Errorf("Contains(key %d) = %t, want %t", i, got, want)
		}
	}
}

func BenchmarkVerifyThreshold(b *testing.B) {
	keys := testKeys(5)
	g := groupOf(keys, 3)
	msg := []byte("benchmark message")
	sigs := []Signature{sigBy(keys[0], msg), sigBy(keys[2], msg), sigBy(keys[4], msg)}
	b.ReportAllocs()
	for b.Loop() {
		if err := g.VerifyThreshold(msg, sigs); err != nil {
			b.Fatal(err)
		}
	}
}
