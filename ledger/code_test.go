package ledger

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeup/teeup/internal/wire"
)

// legacyStatus encodes a status as binaries before result codes wrote it:
// state, height, reason.
func legacyStatus(state uint8, height uint64, reason string) []byte {
	e := wire.NewEncoder(16 + len(reason))
	e.U8(state)
	e.U64(height)
	e.String(reason)
	return e.Bytes()
}

func TestStatusCodecRoundTrip(t *testing.T) {
	for _, st := range []TxStatus{
		{State: StatePending, Code: CodeOK},
		{State: StateCommitted, Height: 7, Code: CodeOK},
		{State: StateCommitted, Height: 9, Code: CodeNoEffect, Reason: "no effect: duplicate approval"},
		{State: StateRejected, Code: CodeBadNonce, Reason: "bad nonce: got 3, want 1"},
		{State: StateRejected, Code: Code("a_code_of_a_newer_binary"), Reason: "x"},
	} {
		b, err := encodeStatus(st)
		if err != nil {
			t.Fatalf("encode %+v: %v", st, err)
		}
		got, err := decodeStatus(b)
		if err != nil || got != st {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", st, got, err)
		}
	}
}

// TestStatusLegacyDecoding: statuses written before codes existed still
// decode, with the code their state implies.
func TestStatusLegacyDecoding(t *testing.T) {
	cases := []struct {
		name string
		raw  []byte
		want TxStatus
	}{
		{"pending", legacyStatus(statePending, 0, ""), TxStatus{State: StatePending, Code: CodeOK}},
		{"committed", legacyStatus(stateCommitted, 4, ""), TxStatus{State: StateCommitted, Height: 4, Code: CodeOK}},
		{"committed without effect", legacyStatus(stateCommitted, 5, "no effect: release 2.0.0 is already scheduled at height 40"),
			TxStatus{State: StateCommitted, Height: 5, Code: CodeNoEffect, Reason: "no effect: release 2.0.0 is already scheduled at height 40"}},
		{"rejected", legacyStatus(stateRejected, 0, "bad nonce: got 3, want 1"), TxStatus{State: StateRejected, Code: CodeRejected, Reason: "bad nonce: got 3, want 1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeStatus(tc.raw)
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
}

func TestStatusCodecRejections(t *testing.T) {
	coded := func(state uint8, code string) []byte {
		e := wire.NewEncoder(32)
		e.U8(state)
		e.U64(1)
		e.String("r")
		e.String(code)
		return e.Bytes()
	}
	cases := []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"unknown legacy state", legacyStatus(9, 0, "")},
		{"unknown coded state", coded(9|statusCoded, "ok")},
		{"empty code", coded(stateRejected|statusCoded, "")},
		{"code too long", coded(stateRejected|statusCoded, strings.Repeat("c", maxCodeLen+1))},
		{"coded without a code", legacyStatus(stateRejected|statusCoded, 0, "r")},
		{"trailing bytes", append(coded(stateRejected|statusCoded, "bad_nonce"), 0)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if st, err := decodeStatus(tc.raw); err == nil {
				t.Fatalf("decoded %+v", st)
			}
		})
	}
	for _, st := range []TxStatus{
		{State: StateRejected},
		{State: StateRejected, Code: Code(strings.Repeat("c", maxCodeLen+1))},
		{State: "lost", Code: CodeOK},
	} {
		if _, err := encodeStatus(st); err == nil {
			t.Errorf("encoded %+v", st)
		}
	}
}

// FuzzDecodeStatus: the status decoder never panics; a coded status it
// accepts re-encodes to exactly its input, a legacy one to a coded status
// that decodes to the same value.
func FuzzDecodeStatus(f *testing.F) {
	for _, st := range []TxStatus{
		{State: StatePending, Code: CodeOK},
		{State: StateCommitted, Height: 9, Code: CodeNoEffect, Reason: "no effect: x"},
		{State: StateRejected, Code: CodeDowngrade, Reason: "downgrade"},
	} {
		b, err := encodeStatus(st)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add(legacyStatus(stateCommitted, 3, "no effect: y"))
	f.Add(legacyStatus(stateRejected, 0, "bad signature"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeStatus(b)
		if err != nil {
			return
		}
		if st.Code == "" {
			t.Fatalf("decoded %+v without a code", st)
		}
		enc, err := encodeStatus(st)
		if err != nil {
			t.Fatalf("re-encode %+v: %v", st, err)
		}
		if b[0]&statusCoded != 0 && !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, enc)
		}
		if again, err := decodeStatus(enc); err != nil || again != st {
			t.Fatalf("decode(encode(%+v)) = %+v, %v", st, again, err)
		}
	})
}
