package ledger

import (
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/wire"
)

func TestSealBodyRoundTrip(t *testing.T) {
	key := testLedgerKey()
	for _, n := range []int{0, 1, 5} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var txs []*Tx
			for i := 0; i < n; i++ {
				txs = append(txs, NewPayment(testChain, alice, addrOf(bob), uint64(i+1), uint64(i+1)))
			}
			body, err := SealBody(key, testChain, 3, Hash{7}, txs)
			if err != nil {
				t.Fatal(err)
			}
			got, err := OpenBody(key, testChain, 3, Hash{7}, body)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != n {
				t.Fatalf("%d txs, want %d", len(got), n)
			}
			for i := range got {
				if got[i].ID() != txs[i].ID() {
					t.Fatalf("tx %d differs", i)
				}
			}
			again, err := SealBody(key, testChain, 3, Hash{7}, txs)
			if err != nil {
				t.Fatal(err)
			}
			if string(again) == string(body) {
				t.Fatal("two seals of one body are identical: the nonce is not random")
			}
		})
	}
}

func TestOpenBodyRejections(t *testing.T) {
	key := testLedgerKey()
	txs := []*Tx{sampleTx()}
	body, err := SealBody(key, testChain, 3, Hash{7}, txs)
	if err != nil {
		t.Fatal(err)
	}
	otherKey := key
	otherKey[0] ^= 1
	s, err := newSuite(key)
	if err != nil {
		t.Fatal(err)
	}
	// sealPlain seals arbitrary plaintext as a body, to test the decoder
	// behind the authentication.
	sealPlain := func(plain []byte) []byte { return s.body.Seal(nil, nil, plain, bodyAD(testChain, 3, Hash{7})) }
	flip := func(i int) []byte {
		b := append([]byte(nil), body...)
		b[i] ^= 0x80
		return b
	}
	cases := []struct {
		name   string
		key    LedgerKey
		chain  string
		height uint64
		prev   Hash
		body   []byte
		want   string
	}{
		{"zero key", LedgerKey{}, testChain, 3, Hash{7}, body, "no ledger key"},
		{"other key", otherKey, testChain, 3, Hash{7}, body, "message authentication failed"},
		{"other chain", key, "other", 3, Hash{7}, body, "message authentication failed"},
		{"other height", key, testChain, 4, Hash{7}, body, "message authentication failed"},
		{"other prev", key, testChain, 3, Hash{8}, body, "message authentication failed"},
		{"nonce flipped", key, testChain, 3, Hash{7}, flip(0), "message authentication failed"},
		{"ciphertext flipped", key, testChain, 3, Hash{7}, flip(20), "message authentication failed"},
		{"tag flipped", key, testChain, 3, Hash{7}, flip(len(body) - 1), "message authentication failed"},
		{"truncated", key, testChain, 3, Hash{7}, body[:len(body)-1], "message authentication failed"},
		{"too short", key, testChain, 3, Hash{7}, body[:27], "too short"},
		{"empty", key, testChain, 3, Hash{7}, nil, "too short"},
		{"oversize", key, testChain, 3, Hash{7}, make([]byte, MaxBodySize+1), "more than"},
		{"plaintext empty", key, testChain, 3, Hash{7}, sealPlain(nil), "truncated"},
		{"plaintext trailing byte", key, testChain, 3, Hash{7}, sealPlain(encodeWith(func(e *wire.Encoder) { e.U32(0); e.U8(1) })), "trailing"},
		{"plaintext count beyond data", key, testChain, 3, Hash{7}, sealPlain(encodeWith(func(e *wire.Encoder) { e.U32(1000) })), "exceeds the maximum"},
		{"plaintext malformed tx", key, testChain, 3, Hash{7}, sealPlain(encodeWith(func(e *wire.Encoder) {
			e.U32(1)
			e.Var(make([]byte, 200))
		})), "tx 0"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			txs, err := OpenBody(c.key, c.chain, c.height, c.prev, c.body)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %d txs, %v; want an error containing %q", len(txs), err, c.want)
			}
		})
	}
}

func TestSealBodyRejections(t *testing.T) {
	big := sampleTx()
	big.Payload = make([]byte, MaxPayloadSize+1)
	cases := []struct {
		name string
		key  LedgerKey
		txs  []*Tx
		want string
	}{
		{"zero key", LedgerKey{}, nil, "no ledger key"},
		{"nil tx", testLedgerKey(), []*Tx{nil}, "tx 0 is nil"},
		{"oversize tx", testLedgerKey(), []*Tx{big}, "payload has"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := SealBody(c.key, testChain, 1, Hash{}, c.txs)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
}

func TestSealEntryRoundTrip(t *testing.T) {
	key := testLedgerKey()
	cmd := &Command{Kind: CmdSubmitTx, Tx: sampleTx()}
	data, err := SealEntry(key, testChain, cmd)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), string(cmd.Tx.Encode()[10:40])) {
		t.Fatal("sealed entry contains the plaintext")
	}
	got, err := OpenEntry(key, testChain, data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, cmd) {
		t.Fatalf("round trip: got %+v", got)
	}
}

func TestOpenEntryRejections(t *testing.T) {
	key := testLedgerKey()
	data, err := SealEntry(key, testChain, &Command{Kind: CmdHalt, HaltHeight: 9})
	if err != nil {
		t.Fatal(err)
	}
	body, err := SealBody(key, testChain, 1, Hash{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSuite(key)
	if err != nil {
		t.Fatal(err)
	}
	sealPlain := func(plain []byte) []byte { return s.entry.Seal(nil, nil, plain, entryAD(testChain)) }
	otherKey := key
	otherKey[31] ^= 1
	flipped := append([]byte(nil), data...)
	flipped[15] ^= 1
	cases := []struct {
		name  string
		key   LedgerKey
		chain string
		data  []byte
		want  string
	}{
		{"zero key", LedgerKey{}, testChain, data, "no ledger key"},
		{"other key", otherKey, testChain, data, "authentication failed"},
		{"other chain", key, "other", data, "authentication failed"},
		{"tampered", key, testChain, flipped, "authentication failed"},
		{"too short", key, testChain, data[:20], "too short"},
		{"too long", key, testChain, make([]byte, maxBlockLen+100), "larger than any command"},
		{"a block body is not an entry", key, testChain, body, "authentication failed"},
		{"plaintext unknown kind", key, testChain, sealPlain([]byte{42}), "unknown command kind 42"},
		{"plaintext empty", key, testChain, sealPlain(nil), "truncated"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := OpenEntry(c.key, c.chain, c.data)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
		})
	}
	if _, err := SealEntry(key, testChain, &Command{Kind: CmdSubmitTx}); err == nil {
		t.Fatal("SealEntry accepted an invalid command")
	}
}

func TestLedgerKeyIsNotPrinted(t *testing.T) {
	k := testLedgerKey()
	secret := hex.EncodeToString(k[:])
	for _, verb := range []string{"%v", "%s", "%x", "%#v", "%+v"} {
		if out := fmt.Sprintf(verb, k); strings.Contains(out, secret) || strings.Contains(out, "90, 90") {
			t.Errorf("%s prints the key: %s", verb, out)
		}
	}
	fresh, err := NewLedgerKey()
	if err != nil || fresh.IsZero() || fresh == k {
		t.Fatalf("NewLedgerKey: %v", err)
	}
	if _, err := newSuite(LedgerKey{}); !errors.Is(err, ErrNoLedgerKey) {
		t.Fatalf("zero key: %v", err)
	}
}
