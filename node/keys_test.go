package node

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

func testPlatform(t testing.TB) *sim.Platform {
	t.Helper()
	dir := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(dir, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.InitPlatform(filepath.Join(dir, "p"), ca)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testKeys(t testing.TB) *Keys {
	t.Helper()
	_, nk, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	lk, err := ledger.NewLedgerKey()
	if err != nil {
		t.Fatal(err)
	}
	return &Keys{ChainID: "c1", NodeID: 3, NodeKey: nk, LedgerKey: lk}
}

func TestKeysSealedPerMeasurement(t *testing.T) {
	p := testPlatform(t)
	v1 := p.NewEnclave(tee.Identity{UniqueID: tee.Measurement{1}})
	v2 := p.NewEnclave(tee.Identity{UniqueID: tee.Measurement{2}})
	data := t.TempDir()
	k := testKeys(t)
	if err := SaveKeys(v1, data, k); err != nil {
		t.Fatal(err)
	}
	got, err := LoadKeys(v1, data, "c1", 3)
	if err != nil {
		t.Fatal(err)
	}
	if !got.NodeKey.Equal(k.NodeKey) || got.LedgerKey != k.LedgerKey {
		t.Fatal("keys changed through sealing")
	}
	// Another version cannot read them and is told why.
	_, err = LoadKeys(v2, data, "c1", 3)
	if !errors.Is(err, ErrNoKeys) || !strings.Contains(err.Error(), "handover") || !strings.Contains(err.Error(), tee.Measurement{1}.String()[:12]) {
		t.Fatalf("LoadKeys(other version) = %v", err)
	}
	// Node and chain must match.
	if _, err := LoadKeys(v1, data, "c1", 4); err == nil {
		t.Fatal("keys of node 3 loaded as node 4")
	}
	// A blob renamed to the other version's file does not unseal.
	raw, err := os.ReadFile(layout.Node(data).SealedKeys(v1.Identity().UniqueID))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(layout.Node(data).SealedKeys(v2.Identity().UniqueID), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadKeys(v2, data, "c1", 3); err == nil || !errors.Is(err, tee.ErrSealedForOtherEnclave) {
		t.Fatalf("LoadKeys(copied blob) = %v", err)
	}
}

func TestDecodeKeysRejections(t *testing.T) {
	good := testKeys(t).Encode()
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"truncated", good[:len(good)-1]},
		{"trailing", append(append([]byte(nil), good...), 0)},
		{"bad magic", append([]byte("XKEY"), good[4:]...)},
		{"zero ledger key", append(append([]byte(nil), good[:len(good)-32]...), make([]byte, 32)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := DecodeKeys(tt.b); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func FuzzDecodeKeys(f *testing.F) {
	f.Add(testKeys(f).Encode())
	f.Add([]byte("TKEY\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKeys(b)
		if err != nil {
			return
		}
		again, err := DecodeKeys(k.Encode())
		if err != nil || again.ChainID != k.ChainID || !again.NodeKey.Equal(k.NodeKey) {
			t.Fatalf("round trip of accepted keys failed: %v", err)
		}
	})
}
