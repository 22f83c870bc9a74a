package selfupgrade

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	for _, s := range []State{{}, {Entries: []Entry{{Name: "a.sealed", Data: []byte("keys")}, {Name: "b.sealed", Data: nil}}}} {
		raw, err := s.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if len(raw) == 0 {
			t.Fatal("empty encoding: the handover refuses an empty secret")
		}
		var got State
		if err := got.UnmarshalBinary(raw); err != nil {
			t.Fatal(err)
		}
		if len(got.Entries) != len(s.Entries) {
			t.Fatalf("%d entries, want %d", len(got.Entries), len(s.Entries))
		}
		for i := range s.Entries {
			if got.Entries[i].Name != s.Entries[i].Name || !bytes.Equal(got.Entries[i].Data, s.Entries[i].Data) {
				t.Fatalf("entry %d = %+v, want %+v", i, got.Entries[i], s.Entries[i])
			}
		}
	}
}

// TestStateRejections: every malformed state is refused with ErrBadState.
func TestStateRejections(t *testing.T) {
	good, err := State{Entries: []Entry{{Name: "a.sealed", Data: []byte("k")}}}.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	many := State{}
	for i := 0; i <= MaxEntries; i++ {
		many.Entries = append(many.Entries, Entry{Name: strings.Repeat("n", 1+i%200) + string(rune('a'+i%26))})
	}
	for _, tt := range []struct {
		name  string
		state *State
		raw   []byte
	}{
		{name: "path separator", state: &State{Entries: []Entry{{Name: "../journal.json"}}}},
		{name: "dot name", state: &State{Entries: []Entry{{Name: ".hidden"}}}},
		{name: "empty name", state: &State{Entries: []Entry{{Name: ""}}}},
		{name: "duplicate", state: &State{Entries: []Entry{{Name: "a"}, {Name: "a"}}}},
		{name: "too many", state: &many},
		{name: "too large", state: &State{Entries: []Entry{{Name: "a", Data: make([]byte, maxEntryBytes+1)}}}},
		{name: "trailing bytes", raw: append(append([]byte{}, good...), 0)},
		{name: "truncated", raw: good[:len(good)-1]},
		{name: "other domain", raw: append([]byte{0, 0, 0, 3, 'x', 'y', 'z'}, good[4+len(StateDomain):]...)},
		{name: "empty", raw: nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.state != nil {
				if _, err := tt.state.MarshalBinary(); !errors.Is(err, ErrBadState) {
					t.Fatalf("marshal = %v, want ErrBadState", err)
				}
				return
			}
			var s State
			if err := s.UnmarshalBinary(tt.raw); !errors.Is(err, ErrBadState) {
				t.Fatalf("unmarshal = %v, want ErrBadState", err)
			}
		})
	}
}

func FuzzStateUnmarshal(f *testing.F) {
	good, _ := State{Entries: []Entry{{Name: "a.sealed", Data: []byte("k")}}}.MarshalBinary()
	f.Add(good)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s State
		if err := s.UnmarshalBinary(b); err != nil {
			return
		}
		again, err := s.MarshalBinary()
		if err != nil {
			t.Fatalf("a decoded state does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatal("decode and encode do not round-trip")
		}
	})
}
