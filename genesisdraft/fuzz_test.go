package genesisdraft

import (
	"encoding/json"
	"errors"
	"testing"
)

// FuzzParseBundle checks that ParseBundle never panics, that it fails only
// with ErrMalformed, and that whatever it accepts validates, re-encodes to
// a bundle that parses equal, and can start a draft.
func FuzzParseBundle(f *testing.F) {
	good, err := bundle(1).Marshal()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte(`{"format":"teeup-host-bundle/1"}`))
	f.Add([]byte(`{"format":"teeup-host-bundle/1","node":{"id":1}}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		b, err := ParseBundle(raw)
		if err != nil {
			if b != nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("failed parse: %v (bundle %v), want ErrMalformed and none", err, b)
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("parsed bundle does not validate: %v", err)
		}
		enc, err := b.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseBundle(enc)
		if err != nil || again.Node != b.Node || again.NOGKey != b.NOGKey || again.KMGKey != b.KMGKey || again.Account != b.Account {
			t.Fatalf("re-encoded bundle parses to %+v, %v; want %+v", again, err, b)
		}
		d, err := New(Options{ChainID: "fuzz", Time: draftTime, KMGThreshold: 1, NOGThreshold: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Add(b); err != nil {
			t.Fatalf("a valid bundle does not start a draft: %v", err)
		}
		if b.KMGKey != "" {
			g, err := d.Genesis()
			if err != nil {
				t.Fatalf("a one-bundle draft with a KMG key does not finalize: %v", err)
			}
			if err := CheckBundle(g, b); err != nil {
				t.Fatalf("the genesis does not contain its bundle: %v", err)
			}
		}
	})
}

// FuzzParseDraft checks that ParseDraft never panics and that a draft it
// accepts re-encodes to one that parses equal and finalizes, if at all,
// into a valid genesis.
func FuzzParseDraft(f *testing.F) {
	d, err := New(Options{ChainID: "fuzz", Time: draftTime, KMGThreshold: 1, NOGThreshold: 1})
	if err != nil {
		f.Fatal(err)
	}
	empty, _ := json.Marshal(d)
	if err := d.Add(bundle(1)); err != nil {
		f.Fatal(err)
	}
	one, _ := json.Marshal(d)
	f.Add(empty)
	f.Add(one)
	f.Add(one[:len(one)-5])
	f.Add([]byte(`{"format":"teeup-genesis-draft/1"}`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParseDraft(raw)
		if err != nil {
			if d != nil {
				t.Fatal("failed parse returned a draft")
			}
			return
		}
		enc, err := json.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ParseDraft(enc)
		if err != nil || len(again.Bundles) != len(d.Bundles) {
			t.Fatalf("re-encoded draft: %v", err)
		}
		g, err := d.Genesis()
		if err != nil {
			return
		}
		if err := g.Validate(); err != nil {
			t.Fatalf("finalized genesis does not validate: %v", err)
		}
		for i := range d.Bundles {
			if err := CheckBundle(g, &d.Bundles[i]); err != nil {
				t.Fatalf("finalized genesis lacks bundle %d: %v", i, err)
			}
		}
	})
}
