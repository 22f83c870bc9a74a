package ledger

import "testing"

// TestVerifiedSigsBounded: the set keeps between size/2 and size ids, the
// newest ones; nil is an empty set.
func TestVerifiedSigsBounded(t *testing.T) {
	v := NewVerifiedSigs(8)
	ids := make([]Hash, 20)
	for i := range ids {
		ids[i][0], ids[i][1] = byte(i), 0xaa
		v.Add(ids[i])
	}
	held := 0
	for _, id := range ids {
		if v.Has(id) {
			held++
		}
	}
	if held < 4 || held > 8 {
		t.Fatalf("holds %d of 20 ids, want 4..8", held)
	}
	if !v.Has(ids[19]) || v.Has(ids[0]) {
		t.Fatal("the newest id must be held and the oldest dropped")
	}
	var none *VerifiedSigs
	none.Add(ids[0])
	if none.Has(ids[0]) {
		t.Fatal("a nil set holds nothing")
	}
}

// TestVerifyAllSkipsWhatWasVerified: a transaction whose id is in the set
// is not verified again (the set stands for the exact bytes that verified
// — shown here with a tampered signature, which only a recorded id lets
// pass); every other one is verified; PrecheckPaymentInto records only
// payments that pass.
func TestVerifyAllSkipsWhatWasVerified(t *testing.T) {
	good := NewPayment(testChain, alice, addrOf(bob), 10, 1)
	bad := NewPayment(testChain, alice, addrOf(bob), 11, 2)
	bad.Sig[0] ^= 1
	if got := verifyAll([]*Tx{good, bad}, nil); !got[0] || got[1] {
		t.Fatalf("without a set: %v, want [true false]", got)
	}
	v := NewVerifiedSigs(16)
	if _, code, _ := PrecheckPaymentInto(testChain, bad, v); code != CodeBadSignature {
		t.Fatalf("tampered payment: code %q", code)
	}
	if v.Has(bad.ID()) {
		t.Fatal("a payment that failed its precheck was recorded as verified")
	}
	if _, code, _ := PrecheckPaymentInto(testChain, good, v); code != "" || !v.Has(good.ID()) {
		t.Fatalf("good payment: code %q, recorded %t", code, v.Has(good.ID()))
	}
	if got := verifyAll([]*Tx{good, bad}, v); !got[0] || got[1] {
		t.Fatalf("with the good one recorded: %v, want [true false]", got)
	}
	v.Add(bad.ID())
	if got := verifyAll([]*Tx{bad}, v); !got[0] {
		t.Fatal("an id in the set was verified again")
	}
}
