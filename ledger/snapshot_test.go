package ledger

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// verifiable returns a checkpoint of a synthetic 8 MB chain (32 blocks,
// enough for several verification ranges) and its applied index.
func verifiable(t *testing.T) (dir string, applied uint64, g *Genesis) {
	t.Helper()
	g = testGenesis(1)
	src := filepath.Join(t.TempDir(), "src")
	syntheticChain(t, src, g, 8)
	s, err := Open(src, testOptions(g))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir = filepath.Join(t.TempDir(), "cp")
	applied, _, err = s.CheckpointState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return dir, applied, g
}

func verifyOpts(g *Genesis, applied uint64) VerifyOptions {
	return VerifyOptions{Genesis: g, LedgerKey: testLedgerKey(), Applied: applied, Bodies: true,
		CheckRaftConf: func([]byte) error { return nil }}
}

// tamper rewrites block h of the checkpoint with edit applied.
func tamper(t *testing.T, dir string, h uint64, edit func(*Block)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw, closer, err := db.Get(blockKey(h))
	if err != nil {
		t.Fatal(err)
	}
	blk, err := DecodeBlock(append([]byte(nil), raw...))
	closer.Close()
	if err != nil {
		t.Fatal(err)
	}
	edit(blk)
	if err := db.Set(blockKey(h), blk.Encode(), pebble.Sync); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyCheckpointAcceptsAGoodHistory(t *testing.T) {
	dir, applied, g := verifiable(t)
	sum, err := VerifyCheckpoint(context.Background(), dir, verifyOpts(g, applied))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Height != 32 {
		t.Fatalf("verified height %d, want 32", sum.Height)
	}
}

func TestVerifyCheckpointRejects(t *testing.T) {
	other := testGenesis(1)
	other.ChainID = "other-chain"
	stranger := testKey(99)
	cases := []struct {
		name  string
		edit  func(t *testing.T, dir string)
		opts  func(VerifyOptions) VerifyOptions
		valid bool // checks that the case itself is meaningful
	}{
		{name: "another chain", opts: func(o VerifyOptions) VerifyOptions { o.Genesis = other; return o }},
		{name: "applied index differs from the raft snapshot", opts: func(o VerifyOptions) VerifyOptions { o.Applied++; return o }},
		{name: "raft membership differs", opts: func(o VerifyOptions) VerifyOptions {
			o.CheckRaftConf = func([]byte) error { return errors.New("voters differ") }
			return o
		}},
		{name: "broken hash chain at a range boundary", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 17, func(b *Block) { b.Header.PrevHash[0] ^= 1; resign(b, nodeSigner(1)) })
		}},
		{name: "broken hash chain inside a range", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 3, func(b *Block) { b.Header.PrevHash[5] ^= 1; resign(b, nodeSigner(1)) })
		}},
		{name: "bad proposer signature", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 9, func(b *Block) { b.Sig[0] ^= 1 })
		}},
		{name: "key never registered", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 30, func(b *Block) { b.Header.ProposerKey = addrOf(stranger); resign(b, stranger) })
		}},
		{name: "body does not match its hash", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 12, func(b *Block) { b.Body[0] ^= 1 })
		}},
		{name: "wrong height stored", edit: func(t *testing.T, dir string) {
			tamper(t, dir, 20, func(b *Block) { b.Header.Height = 21; resign(b, nodeSigner(1)) })
		}},
		{name: "missing block", edit: func(t *testing.T, dir string) {
			db, err := pebble.Open(dir, &pebble.Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Delete(blockKey(25), pebble.Sync); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir, applied, g := verifiable(t)
			if tc.edit != nil {
				tc.edit(t, dir)
			}
			o := verifyOpts(g, applied)
			if tc.opts != nil {
				o = tc.opts(o)
			}
			if _, err := VerifyCheckpoint(context.Background(), dir, o); !errors.Is(err, ErrSnapshotInvalid) {
				t.Fatalf("got %v, want ErrSnapshotInvalid", err)
			}
		})
	}
}
