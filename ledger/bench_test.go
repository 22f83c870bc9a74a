package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// benchSenders returns n deterministic account keys.
func benchSenders(n int) []ed25519.PrivateKey {
	keys := make([]ed25519.PrivateKey, n)
	for i := range keys {
		seed := sha256.Sum256([]byte(fmt.Sprintf("bench sender %d", i)))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
	}
	return keys
}

// BenchmarkApplyPaymentBlock measures applying a block of 100 payments
// (decrypting the body, checking it against the pool, moving balances and
// one commit). Admitting the payments is outside the timer. It runs at
// schema 2 (plaintext records) and schema 3 (records sealed at rest), so
// one run gives the at-rest cost.
func BenchmarkApplyPaymentBlock(b *testing.B) {
	for _, schema := range []int{schemaAccountHistory, schemaAtRest} {
		b.Run(fmt.Sprintf("schema=%d", schema), func(b *testing.B) { benchApplyPaymentBlock(b, schema) })
	}
}

// benchFundedChain opens a chain whose genesis funds n fresh senders
// (and nobody else), and returns them.
func benchFundedChain(b *testing.B, n int, opts ...func(*Options)) ([]ed25519.PrivateKey, *chain) {
	b.Helper()
	senders := benchSenders(n)
	g := testGenesis(1)
	g.Accounts = nil
	for _, k := range senders {
		g.Accounts = append(g.Accounts, GenesisAccount{Address: addrOf(k), Balance: 1 << 40})
	}
	return senders, openChain(b, g, opts...)
}

// applyBench applies blk as the chain's next entry and fails the benchmark
// unless it is accepted with n transactions.
func (c *chain) applyBench(b *testing.B, blk *Block, n int) {
	c.index++
	res, err := c.s.Apply(c.index, &Command{Kind: CmdBlock, Block: blk})
	if err != nil || !res.Accepted || len(res.TxIDs) != n {
		b.Fatalf("block: %+v %v", res, err)
	}
}

func benchApplyPaymentBlock(b *testing.B, schema int) {
	const perBlock = 100
	senders, c := benchFundedChain(b, perBlock, func(o *Options) { o.TargetSchema = schema })
	nonce := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		nonce++
		for i, k := range senders {
			to := addrOf(senders[(i+1)%perBlock])
			if res := c.submit(NewPayment(testChain, k, to, 1, nonce)); !res.Accepted {
				b.Fatal(res.Reason)
			}
		}
		blk := c.build(0)
		b.StartTimer()
		c.applyBench(b, blk, perBlock)
	}
	b.ReportMetric(float64(perBlock*b.N)/b.Elapsed().Seconds(), "payments/s")
}

// BenchmarkApplyDirectPaymentBlock measures applying a block that carries
// 100 payments itself (the mempool path: signatures verified in parallel,
// nonces and funds checked, committed), at schema 3.
func BenchmarkApplyDirectPaymentBlock(b *testing.B) {
	const perBlock = 100
	senders, c := benchFundedChain(b, perBlock)
	nonce := uint64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		nonce++
		payments := make([]*Tx, perBlock)
		for i, k := range senders {
			payments[i] = NewPayment(testChain, k, addrOf(senders[(i+1)%perBlock]), 1, nonce)
		}
		blk, dropped, err := c.s.BuildBlockWith(1, nodeSigner(1), c.nextTime(), 0, payments)
		if err != nil || len(dropped) != 0 {
			b.Fatalf("build: %v %+v", err, dropped)
		}
		b.StartTimer()
		c.applyBench(b, blk, perBlock)
	}
	b.ReportMetric(float64(perBlock*b.N)/b.Elapsed().Seconds(), "payments/s")
}

// BenchmarkSubmitPayment measures admitting one payment (signature check,
// nonce and balance checks, one commit), at schema 2 (plaintext records)
// and schema 3 (sealed at rest).
func BenchmarkSubmitPayment(b *testing.B) {
	for _, schema := range []int{schemaAccountHistory, schemaAtRest} {
		b.Run(fmt.Sprintf("schema=%d", schema), func(b *testing.B) { benchSubmitPayment(b, schema) })
	}
}

func benchSubmitPayment(b *testing.B, schema int) {
	g := testGenesis(1)
	g.Accounts[0].Balance = 1 << 40
	g.Params.MaxPool = MaxPoolLimit
	c := openChain(b, g, func(o *Options) { o.TargetSchema = schema })
	const prepared = 1024
	var txs []*Tx
	next := uint64(1)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if len(txs) == 0 {
			b.StopTimer()
			for i := 0; i < prepared; i++ {
				txs = append(txs, NewPayment(testChain, alice, addrOf(bob), 1, next))
				next++
			}
			b.StartTimer()
		}
		if res := c.submit(txs[0]); !res.Accepted {
			b.Fatal(res.Reason)
		}
		txs = txs[1:]
	}
}

// benchDBSize is the size of the database the checkpoint benchmarks copy.
const benchDBSize = 32 << 20

// bigLedger returns a ledger whose database holds about benchDBSize bytes
// of incompressible values in sstables (under a prefix the ledger does not
// use, written directly).
func bigLedger(b *testing.B) *Store {
	b.Helper()
	c := openChain(b, testGenesis(1))
	rng := rand.New(rand.NewChaCha8([32]byte{1}))
	value := make([]byte, 1024)
	db := c.s.DB()
	for i := 0; i < benchDBSize/len(value); {
		batch := db.NewBatch()
		for j := 0; j < 1024; j, i = j+1, i+1 {
			for k := range value {
				value[k] = byte(rng.Uint32())
			}
			if err := batch.Set([]byte(fmt.Sprintf("z/bench/%08d", i)), value, nil); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(pebble.NoSync); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	if err := db.Flush(); err != nil {
		b.Fatal(err)
	}
	return c.s
}

func dirSize(b *testing.B, dir string) int64 {
	b.Helper()
	var n int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			b.Fatal(err)
		}
		n += info.Size()
	}
	return n
}

// BenchmarkCheckpoint measures Store.Checkpoint of a ~32 MiB database.
func BenchmarkCheckpoint(b *testing.B) {
	s := bigLedger(b)
	b.SetBytes(dirSize(b, s.Dir()))
	out := b.TempDir()
	i := 0
	b.ResetTimer()
	for b.Loop() {
		dst := filepath.Join(out, fmt.Sprint(i))
		i++
		if err := s.Checkpoint(dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkFullCopy measures copying the same database directory byte by
// byte, with the same durability (each file and the directory synced): what
// a snapshot would cost without hard links.
func BenchmarkFullCopy(b *testing.B) {
	s := bigLedger(b)
	b.SetBytes(dirSize(b, s.Dir()))
	out := b.TempDir()
	i := 0
	b.ResetTimer()
	for b.Loop() {
		dst := filepath.Join(out, fmt.Sprint(i))
		i++
		if err := copyDir(s.Dir(), dst); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := os.RemoveAll(dst); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

func copyDir(src, dst string) error {
	if err := os.Mkdir(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Name() == "LOCK" {
			continue
		}
		if err := copyFile(filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())); err != nil {
			return err
		}
	}
	d, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
