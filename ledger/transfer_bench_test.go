package ledger

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/teeup/teeup/statetransfer"
)

// syntheticChain writes height blocks of bodySize random bytes each (as
// encrypted bodies look) onto the store's chain, signed by node 1, straight
// into Pebble: a big ledger in seconds, whose whole history
// VerifyCheckpoint checks like a real one's (it does not decrypt bodies).
func syntheticChain(tb testing.TB, dir string, g *Genesis, mb int) {
	tb.Helper()
	s, err := Open(dir, testOptions(g))
	if err != nil {
		tb.Fatal(err)
	}
	key := nodeSigner(1)
	if res, err := s.Apply(1, &Command{Kind: CmdRegisterNode, Node: &NodeRecord{ID: 1, Key: addrOf(key)}}); err != nil || !res.Accepted {
		tb.Fatalf("register: %+v %v", res, err)
	}
	_, prev := s.Head()
	db := s.DB()
	const bodySize = 256 << 10
	body := make([]byte, bodySize)
	var head headRecord
	t0 := time.Now().UnixNano()
	blocks := uint64(mb<<20) / bodySize
	for h := uint64(1); h <= blocks; h++ {
		if _, err := rand.Read(body); err != nil {
			tb.Fatal(err)
		}
		blk := &Block{Header: BlockHeader{ChainID: g.ChainID, Height: h, PrevHash: prev, Time: t0 + int64(h),
			BodyHash: sha256.Sum256(body), Proposer: 1, ProposerKey: addrOf(key)}, Body: append([]byte(nil), body...)}
		copy(blk.Sig[:], ed25519.Sign(key, blk.Header.SigningBytes()))
		if err := db.Set(blockKey(h), blk.Encode(), pebble.NoSync); err != nil {
			tb.Fatal(err)
		}
		prev = blk.Hash()
		head = headRecord{Height: h, Hash: prev, Time: blk.Header.Time}
	}
	if err := db.Set(keyHead, head.encode(), pebble.Sync); err != nil {
		tb.Fatal(err)
	}
	if err := db.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
}

// tlsPipe returns the two ends of a TLS 1.3 connection over loopback TCP
// (the state transfer runs inside the peer transport's TLS).
func tlsPipe(tb testing.TB) (client, server net.Conn) {
	tb.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		tb.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: k}}, MinVersion: tls.VersionTLS13})
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			err = c.(*tls.Conn).Handshake()
		}
		if err != nil {
			accepted <- nil
			return
		}
		accepted <- c
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	if err != nil {
		tb.Fatal(err)
	}
	srv := <-accepted
	if srv == nil {
		tb.Fatal("TLS accept failed")
	}
	return c, srv
}

// BenchmarkStateTransfer measures a whole state transfer of a ledger of
// TEEUP_BENCH_LEDGER_MB (default 100) — checkpoint, stream over TLS,
// receive and sync, verify the history — against a plain full copy of the
// same directory, in the same run, and reports the ratio.
//
//	TEEUP_BENCH_LEDGER_MB=1024 go test -run '^$' -bench StateTransfer -benchtime 1x ./ledger
func BenchmarkStateTransfer(b *testing.B) {
	mb := 100
	if v := os.Getenv("TEEUP_BENCH_LEDGER_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("TEEUP_BENCH_LEDGER_MB=%q", v)
		}
		mb = n
	}
	g := testGenesis(1)
	root := b.TempDir()
	src := filepath.Join(root, "src")
	syntheticChain(b, src, g, mb)
	s, err := Open(src, testOptions(g))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	// The copy baseline copies a quiescent copy of the same ledger (a live
	// Pebble directory recycles its WAL files under a copy).
	still := filepath.Join(root, "still")
	if err := s.Checkpoint(still); err != nil {
		b.Fatal(err)
	}
	size := dirSize(b, still)
	var transfer, verify, cp time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		out := filepath.Join(root, fmt.Sprintf("out-%d", i))
		in := filepath.Join(root, fmt.Sprintf("in-%d", i))
		dst := filepath.Join(root, fmt.Sprintf("copy-%d", i))
		client, server := tlsPipe(b)
		b.StartTimer()

		start := time.Now()
		applied, _, err := s.CheckpointState(out)
		if err != nil {
			b.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() {
			_, err := statetransfer.SendDir(context.Background(), client, out, nil)
			errc <- err
		}()
		if _, err := statetransfer.ReceiveDir(context.Background(), server, in, statetransfer.Limits{}, nil); err != nil {
			b.Fatal(err)
		}
		if err := <-errc; err != nil {
			b.Fatal(err)
		}
		streamed := time.Now()
		if _, err := VerifyCheckpoint(context.Background(), in, VerifyOptions{Genesis: g, LedgerKey: testLedgerKey(), Applied: applied,
			CheckRaftConf: func([]byte) error { return nil }}); err != nil {
			b.Fatal(err)
		}
		transfer += time.Since(start)
		verify += time.Since(streamed)

		t := time.Now()
		if err := copyDir(still, dst); err != nil {
			b.Fatal(err)
		}
		cp += time.Since(t)
		b.StopTimer()
		client.Close()
		server.Close()
		for _, d := range []string{out, in, dst} {
			os.RemoveAll(d)
		}
		b.StartTimer()
	}
	n := float64(b.N)
	b.ReportMetric(float64(size>>20), "MB")
	b.ReportMetric(transfer.Seconds()/n, "transfer-s")
	b.ReportMetric(verify.Seconds()/n, "verify-s")
	b.ReportMetric(cp.Seconds()/n, "copy-s")
	b.ReportMetric(float64(transfer)/float64(cp), "transfer/copy")
}
