package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/teeup/teeup/release"
)

const testChain = "test-chain"

var genesisTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// testKey returns a deterministic ed25519 key.
func testKey(seed byte) ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
}

func addrOf(k ed25519.PrivateKey) Address {
	var a Address
	copy(a[:], k.Public().(ed25519.PublicKey))
	return a
}

func pubHex(k ed25519.PrivateKey) string { return hex.EncodeToString(k.Public().(ed25519.PublicKey)) }

// Test actors: alice, bob and carol have balances; dave has none. Node n's
// key is nodeSigner(n).
var (
	alice = testKey(1)
	bob   = testKey(2)
	carol = testKey(3)
	dave  = testKey(4)
)

func nodeSigner(id uint64) ed25519.PrivateKey { return testKey(byte(100 + id)) }

func testLedgerKey() LedgerKey {
	var k LedgerKey
	copy(k[:], bytes.Repeat([]byte{0x5a}, 32))
	return k
}

// testGenesis returns a valid genesis with n nodes and balances
// alice 1000, bob 500, carol 100.
func testGenesis(n int) *Genesis {
	g := &Genesis{
		ChainID: testChain,
		Time:    genesisTime,
		Accounts: []GenesisAccount{
			{Address: addrOf(alice), Balance: 1000, Label: "alice"},
			{Address: addrOf(bob), Balance: 500, Label: "operator-test-1"},
			{Address: addrOf(carol), Balance: 100},
		},
		KMG: release.Group{Keys: []string{pubHex(testKey(50)), pubHex(testKey(51))}, Threshold: 2},
		NOG: release.Group{Keys: []string{pubHex(testKey(60))}, Threshold: 1},
	}
	for i := 1; i <= n; i++ {
		g.Nodes = append(g.Nodes, GenesisNode{
			ID:         uint64(i),
			Name:       fmt.Sprintf("node-%d", i),
			PeerAddr:   fmt.Sprintf("127.0.0.1:%d", 7000+i),
			ClientAddr: fmt.Sprintf("127.0.0.1:%d", 8000+i),
		})
	}
	return g
}

// chain drives a Store the way the consensus layer would.
type chain struct {
	t     testing.TB
	s     *Store
	index uint64
	clock time.Time
}

func testOptions(g *Genesis) Options {
	return Options{Genesis: g, LedgerKey: testLedgerKey()}
}

// openChain opens a fresh store in a temporary directory with node 1
// registered.
func openChain(t testing.TB, g *Genesis, opts ...func(*Options)) *chain {
	t.Helper()
	o := testOptions(g)
	for _, f := range opts {
		f(&o)
	}
	c := openChainAt(t, t.TempDir(), o)
	c.mustAccept(&Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(nodeSigner(1))}})
	return c
}

func openChainAt(t testing.TB, dir string, o Options) *chain {
	t.Helper()
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if !s.isClosed() {
			s.Close()
		}
	})
	return &chain{t: t, s: s, index: s.AppliedIndex(), clock: genesisTime}
}

func (s *Store) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// apply applies cmd at the next index; an error fails the test.
func (c *chain) apply(cmd *Command) Result {
	c.t.Helper()
	c.index++
	res, err := c.s.Apply(c.index, cmd)
	if err != nil {
		c.t.Fatalf("Apply(%d, %v): %v", c.index, cmd.Kind, err)
	}
	if res.Duplicate {
		c.t.Fatalf("Apply(%d): unexpected duplicate", c.index)
	}
	return res
}

func (c *chain) mustAccept(cmd *Command) Result {
	c.t.Helper()
	res := c.apply(cmd)
	if !res.Accepted {
		c.t.Fatalf("%v rejected: %s", cmd.Kind, res.Reason)
	}
	return res
}

func (c *chain) submit(tx *Tx) Result {
	c.t.Helper()
	return c.apply(&Command{Kind: CmdSubmitTx, Tx: tx})
}

func (c *chain) pay(from ed25519.PrivateKey, to ed25519.PrivateKey, amount uint64) *Tx {
	c.t.Helper()
	acct, err := c.s.Account(addrOf(from))
	if err != nil {
		c.t.Fatal(err)
	}
	tx := NewPayment(testChain, from, addrOf(to), amount, acct.Nonce+acct.Pending+1)
	if res := c.submit(tx); !res.Accepted {
		c.t.Fatalf("payment rejected: %s", res.Reason)
	}
	return tx
}

// nextTime advances the test clock by a second.
func (c *chain) nextTime() time.Time {
	c.clock = c.clock.Add(time.Second)
	return c.clock
}

// build builds the next block as node 1.
func (c *chain) build(maxTxs int) *Block {
	c.t.Helper()
	blk, err := c.s.BuildBlock(1, nodeSigner(1), c.nextTime(), maxTxs)
	if err != nil {
		c.t.Fatalf("BuildBlock: %v", err)
	}
	return blk
}

// commit builds the next block from the whole pool and applies it.
func (c *chain) commit() Result {
	c.t.Helper()
	return c.mustAccept(&Command{Kind: CmdBlock, Block: c.build(0)})
}

func (c *chain) account(k ed25519.PrivateKey) Account {
	c.t.Helper()
	a, err := c.s.Account(addrOf(k))
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

// resign re-signs a block header with key after a test changed it.
func resign(b *Block, key ed25519.PrivateKey) {
	copy(b.Sig[:], ed25519.Sign(key, b.Header.SigningBytes()))
}

// dbDigest hashes every key and value of the database but those under
// skip prefixes, so two databases can be compared.
func dbDigest(t testing.TB, db *pebble.DB, skip ...string) Hash {
	t.Helper()
	h := sha256.New()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
next:
	for ok := it.First(); ok; ok = it.Next() {
		for _, p := range skip {
			if strings.HasPrefix(string(it.Key()), p) {
				continue next
			}
		}
		v, err := it.ValueAndErr()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(h, "%x=%x\n", it.Key(), v)
	}
	if err := it.Error(); err != nil {
		t.Fatal(err)
	}
	var out Hash
	copy(out[:], h.Sum(nil))
	return out
}

// withFS makes Open use an in-memory file system.
func withFS(fs vfs.FS) func(*Options) { return func(o *Options) { o.fs = fs } }

// withSchema sets the target schema.
func withSchema(v int) func(*Options) { return func(o *Options) { o.TargetSchema = v } }
