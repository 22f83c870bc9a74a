package distribute

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// memSource is an in-memory Source whose blocks are distinct pseudo-random
// byte strings. Failures can be injected.
type memSource struct {
	mu        sync.Mutex
	blocks    [][]byte
	headFails int            // Head fails this many more times
	blockFail map[uint64]int // Block(h) fails this many more times
	headCalls int
}

var errTransient = errors.New("transient failure")

// newMemSource returns a source with blocks 0..n-1 of size bytes each.
func newMemSource(n, size int, seed uint64) *memSource {
	s := &memSource{blockFail: map[uint64]int{}}
	s.add(n, size, seed)
	return s
}

// add appends n blocks of size bytes.
func (s *memSource) add(n, size int, seed uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := rand.New(rand.NewPCG(seed, uint64(len(s.blocks))))
	for range n {
		b := make([]byte, size)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		s.blocks = append(s.blocks, b)
	}
}

func (s *memSource) Head(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headCalls++
	if s.headFails > 0 {
		s.headFails--
		return 0, fmt.Errorf("head: %w", errTransient)
	}
	if len(s.blocks) == 0 {
		return 0, errors.New("no blocks")
	}
	return uint64(len(s.blocks) - 1), nil
}

func (s *memSource) Block(ctx context.Context, h uint64) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.blockFail[h] > 0 {
		s.blockFail[h]--
		return nil, fmt.Errorf("block %d: %w", h, errTransient)
	}
	if h >= uint64(len(s.blocks)) {
		return nil, fmt.Errorf("block %d: not finalized", h)
	}
	return append([]byte(nil), s.blocks[h]...), nil
}

// block returns a copy of block h.
func (s *memSource) block(h uint64) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.blocks[h]...)
}

// countingDest wraps a Destination, counting Puts and Gets per name and
// optionally failing Puts.
type countingDest struct {
	inner Destination

	mu       sync.Mutex
	puts     map[string]int
	gets     map[string]int
	putFails int // Put fails this many more times (before storing)
}

func newCountingDest(inner Destination) *countingDest {
	return &countingDest{inner: inner, puts: map[string]int{}, gets: map[string]int{}}
}

func (c *countingDest) Put(ctx context.Context, name string, data []byte) error {
	c.mu.Lock()
	if c.putFails > 0 {
		c.putFails--
		c.mu.Unlock()
		return fmt.Errorf("put %s: %w", name, errTransient)
	}
	c.puts[name]++
	c.mu.Unlock()
	return c.inner.Put(ctx, name, data)
}

func (c *countingDest) Get(ctx context.Context, name string) ([]byte, bool, error) {
	c.mu.Lock()
	c.gets[name]++
	c.mu.Unlock()
	return c.inner.Get(ctx, name)
}

func (c *countingDest) List(ctx context.Context, prefix string) ([]string, error) {
	return c.inner.(Lister).List(ctx, prefix)
}

func (c *countingDest) String() string { return "counting(" + c.inner.String() + ")" }

func (c *countingDest) putCount(name string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.puts[name]
}

func (c *countingDest) totalPuts() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.puts {
		n += v
	}
	return n
}

// fakeS3 is an in-process S3 server (gofakes3) with one bucket.
type fakeS3 struct {
	endpoint string // host:port
	client   *minio.Client
	bucket   string
}

const (
	testAccessKey = "test-access"
	testSecretKey = "test-secret"
)

// newFakeS3 starts a loopback S3 fake holding bucket.
func newFakeS3(t testing.TB, bucket string) *fakeS3 {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:  credentials.NewStaticV4(testAccessKey, testSecretKey, ""),
		Secure: false,
	})
	if err != nil {
		t.Fatalf("minio client: %v", err)
	}
	return &fakeS3{endpoint: u.Host, client: client, bucket: bucket}
}

// destKind names a way of building a destination.
type destKind struct {
	name string
	make func(t testing.TB) Destination
}

// destKinds returns each kind of destination, for table tests.
func destKinds() []destKind {
	return []destKind{
		{"dir", func(t testing.TB) Destination {
			d, err := NewDirDestination(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			return d
		}},
		{"s3", func(t testing.TB) Destination {
			f := newFakeS3(t, "ledger")
			return NewS3Destination(f.client, f.bucket, "net1/")
		}},
	}
}

// recordHandler is a slog.Handler that keeps records for assertions.
type recordHandler struct {
	mu      *sync.Mutex
	records *[]slog.Record
}

func newRecordHandler() recordHandler {
	return recordHandler{mu: new(sync.Mutex), records: new([]slog.Record)}
}

func (h recordHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h recordHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.records = append(*h.records, r.Clone())
	return nil
}
func (h recordHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h recordHandler) WithGroup(string) slog.Handler      { return h }

// warnings returns the messages of the recorded warnings.
func (h recordHandler) warnings() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, r := range *h.records {
		if r.Level >= slog.LevelWarn {
			out = append(out, r.Message)
		}
	}
	return out
}

// testLogger logs to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}
