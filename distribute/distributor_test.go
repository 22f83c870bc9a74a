package distribute

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// deadlockGuard bounds how long a test waits for an event that must happen;
// it only turns a hang into a failure, it asserts nothing about speed.
const deadlockGuard = 60 * time.Second

// newDist builds a Distributor over src and dest with a fresh state file
// (unless statePath is given) and a fast poll interval.
func newDist(t testing.TB, src Source, dest Destination, statePath string, hooks *Hooks) *Distributor {
	t.Helper()
	if statePath == "" {
		statePath = filepath.Join(t.TempDir(), "state.json")
	}
	d, err := New(Config{
		StatePath:    statePath,
		Source:       src,
		Dest:         dest,
		PollInterval: time.Millisecond,
		MaxBackoff:   5 * time.Millisecond,
		Logger:       testLogger(t),
		Hooks:        hooks,
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return d
}

// checkPublished asserts that dest holds exactly src's bytes for heights
// 0..head and that the state file says head+1.
func checkPublished(t *testing.T, src *memSource, dest Destination, statePath string, head uint64) {
	t.Helper()
	for h := uint64(0); h <= head; h++ {
		got, found, err := dest.Get(t.Context(), ObjectName(h))
		if err != nil || !found {
			t.Fatalf("block %d: found %v, %v; want it published", h, found, err)
		}
		if !bytes.Equal(got, src.block(h)) {
			t.Fatalf("block %d: destination bytes differ from the source's", h)
		}
	}
	st, err := LoadState(statePath)
	if err != nil || st.NextBlock != head+1 {
		t.Fatalf("state = %+v, %v; want next_block %d", st, err, head+1)
	}
}

func TestPublishAndRestart(t *testing.T) {
	for _, kind := range destKinds() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			src := newMemSource(6, 1024, 1)
			dest := newCountingDest(kind.make(t))
			statePath := filepath.Join(t.TempDir(), "state.json")

			d1 := newDist(t, src, dest, statePath, nil)
			n, err := d1.RunOnce(ctx)
			if err != nil || n != 6 {
				t.Fatalf("first RunOnce = %d, %v; want 6 blocks", n, err)
			}
			if d1.Next() != 6 {
				t.Fatalf("Next() = %d, want 6", d1.Next())
			}
			checkPublished(t, src, dest, statePath, 5)
			if n, err := d1.RunOnce(ctx); err != nil || n != 0 {
				t.Fatalf("RunOnce at head = %d, %v; want nothing to do", n, err)
			}

			// Restart: a new distributor on the same state and destination
			// continues where the first stopped.
			src.add(4, 1024, 2)
			d2 := newDist(t, src, dest, statePath, nil)
			st, err := d2.Reconcile(ctx)
			if err != nil || st.NextBlock != 6 {
				t.Fatalf("Reconcile after restart = %+v, %v; want 6", st, err)
			}
			n, err = d2.RunOnce(ctx)
			if err != nil || n != 4 {
				t.Fatalf("RunOnce after restart = %d, %v; want 4 blocks", n, err)
			}
			checkPublished(t, src, dest, statePath, 9)
			for h := range uint64(10) {
				if c := dest.putCount(ObjectName(h)); c != 1 {
					t.Errorf("block %d uploaded %d times, want once", h, c)
				}
			}
		})
	}
}

// crashPoint is a place where a run can be interrupted.
type crashPoint struct {
	name string
	// install makes the hook at this point fail when its argument is at.
	install func(h *Hooks, at uint64, crash error)
	// args lists the hook arguments to crash at, for a source with head.
	args func(head uint64) []uint64
	// verifies reports whether, after crashing at arg, the restarted run
	// finds the block already stored (and must compare, not upload).
	verifies func(arg uint64) bool
	// leavesTemp reports whether the crash leaves the state temporary file.
	leavesTemp bool
}

func heights(from, to uint64) []uint64 {
	var hs []uint64
	for h := from; h <= to; h++ {
		hs = append(hs, h)
	}
	return hs
}

func crashPoints() []crashPoint {
	failAt := func(at uint64, crash error) func(uint64) error {
		return func(arg uint64) error {
			if arg == at {
				return crash
			}
			return nil
		}
	}
	// Save hooks take the next height: 0 is the state file's creation by
	// Reconcile, n+1 records block n.
	return []crashPoint{
		{
			name:     "before put",
			install:  func(h *Hooks, at uint64, c error) { h.BeforePublish = failAt(at, c) },
			args:     func(head uint64) []uint64 { return heights(0, head) },
			verifies: func(uint64) bool { return false },
		},
		{
			name:     "after put before save",
			install:  func(h *Hooks, at uint64, c error) { h.AfterPut = failAt(at, c) },
			args:     func(head uint64) []uint64 { return heights(0, head) },
			verifies: func(uint64) bool { return true },
		},
		{
			name:     "save started",
			install:  func(h *Hooks, at uint64, c error) { h.BeforeSave = failAt(at, c) },
			args:     func(head uint64) []uint64 { return heights(0, head+1) },
			verifies: func(next uint64) bool { return next > 0 },
		},
		{
			name:       "during save, only temp file written",
			install:    func(h *Hooks, at uint64, c error) { h.SaveTempWritten = failAt(at, c) },
			args:       func(head uint64) []uint64 { return heights(0, head+1) },
			verifies:   func(next uint64) bool { return next > 0 },
			leavesTemp: true,
		},
		{
			name:     "after save",
			install:  func(h *Hooks, at uint64, c error) { h.AfterSave = failAt(at, c) },
			args:     func(head uint64) []uint64 { return heights(0, head+1) },
			verifies: func(uint64) bool { return false },
		},
	}
}

// TestCrashAtEveryPoint interrupts a run at every step of every block, then
// runs a new distributor on the same state file and destination to the
// head: every block must be uploaded exactly once across both runs, with no
// gap, and the state file must never be ahead of the destination.
func TestCrashAtEveryPoint(t *testing.T) {
	heads := map[string]uint64{"dir": 4, "s3": 2}
	for _, kind := range destKinds() {
		head := heads[kind.name]
		for _, cp := range crashPoints() {
			for _, at := range cp.args(head) {
				t.Run(fmt.Sprintf("%s/%s/%d", kind.name, cp.name, at), func(t *testing.T) {
					testCrash(t, kind, cp, at, head)
				})
			}
		}
	}
}

func testCrash(t *testing.T, kind destKind, cp crashPoint, at, head uint64) {
	ctx := t.Context()
	src := newMemSource(int(head)+1, 512, at+7)
	dest := newCountingDest(kind.make(t))
	statePath := filepath.Join(t.TempDir(), "state.json")
	crash := errors.New("simulated crash")

	var hooks Hooks
	cp.install(&hooks, at, crash)
	var before []byte // state file content when the crash hook runs
	if cp.leavesTemp {
		inner := hooks.SaveTempWritten
		hooks.SaveTempWritten = func(next uint64) error {
			before, _ = os.ReadFile(statePath)
			return inner(next)
		}
	}
	d1 := newDist(t, src, dest, statePath, &hooks)
	_, err := d1.RunOnce(ctx)
	if !errors.Is(err, crash) || !errors.Is(err, ErrAborted) {
		t.Fatalf("first run error = %v, want the simulated crash", err)
	}

	// Never ahead: every block below the recorded next height is stored.
	recorded := uint64(0)
	switch st, err := LoadState(statePath); {
	case err == nil:
		recorded = st.NextBlock
	case !errors.Is(err, os.ErrNotExist):
		t.Fatalf("state file after crash: %v", err)
	}
	for h := range recorded {
		if _, found, err := dest.Get(ctx, ObjectName(h)); err != nil || !found {
			t.Fatalf("state says next %d but block %d is not stored (%v)", recorded, h, err)
		}
	}
	if cp.leavesTemp {
		after, _ := os.ReadFile(statePath)
		if !bytes.Equal(before, after) {
			t.Fatalf("state file changed by a crash during save: %q -> %q", before, after)
		}
		tmp, err := LoadState(stateTempPath(statePath))
		if err != nil || tmp.NextBlock != at {
			t.Fatalf("temporary state file = %+v, %v; want next %d", tmp, err, at)
		}
	}

	// Restart on the same files, without hooks, and run to the head.
	d2 := newDist(t, src, dest, statePath, nil)
	n, err := d2.RunOnce(ctx)
	if err != nil {
		t.Fatalf("run after crash: %v", err)
	}
	if want := int(head+1) - int(recorded); n != want {
		t.Fatalf("run after crash advanced %d blocks, want %d", n, want)
	}
	checkPublished(t, src, dest, statePath, head)
	for h := uint64(0); h <= head; h++ {
		if c := dest.putCount(ObjectName(h)); c != 1 {
			t.Errorf("block %d uploaded %d times across both runs, want exactly once", h, c)
		}
	}
	wantVerified := 0.0
	if cp.verifies(at) {
		wantVerified = 1
	}
	if got := metricValue(t, d2.m.verified); got != wantVerified {
		t.Errorf("restarted run compared %v stored blocks, want %v", got, wantVerified)
	}
	if _, err := os.Stat(stateTempPath(statePath)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temporary state file left after the restarted run: %v", err)
	}
}

// foreignBlock is content that is not any source block.
const foreignBlock = "a different block 3"

func TestMismatchRefused(t *testing.T) {
	for _, kind := range destKinds() {
		t.Run(kind.name, func(t *testing.T) {
			ctx := t.Context()
			src := newMemSource(6, 256, 3)
			inner := kind.make(t)
			if err := inner.Put(ctx, ObjectName(3), []byte(foreignBlock)); err != nil {
				t.Fatal(err)
			}
			dest := newCountingDest(inner)
			statePath := filepath.Join(t.TempDir(), "state.json")

			d := newDist(t, src, dest, statePath, nil)
			n, err := d.RunOnce(ctx)
			if !errors.Is(err, ErrBlockMismatch) || n != 3 {
				t.Fatalf("RunOnce = %d, %v; want 3 blocks then ErrBlockMismatch", n, err)
			}
			assertRefusedAt3(t, d, dest, statePath)

			// Run does not retry it, and nothing changes.
			if err := d.Run(ctx); !errors.Is(err, ErrBlockMismatch) {
				t.Fatalf("Run = %v, want ErrBlockMismatch", err)
			}
			assertRefusedAt3(t, d, dest, statePath)

			// A restart, whose Reconcile finds the foreign block, refuses too.
			d2 := newDist(t, src, dest, statePath, nil)
			if _, err := d2.Reconcile(ctx); !errors.Is(err, ErrBlockMismatch) {
				t.Fatalf("Reconcile = %v, want ErrBlockMismatch", err)
			}
			assertRefusedAt3(t, d2, dest, statePath)
		})
	}
}

func assertRefusedAt3(t *testing.T, d *Distributor, dest *countingDest, statePath string) {
	t.Helper()
	if st, err := LoadState(statePath); err != nil || st.NextBlock != 3 {
		t.Fatalf("state = %+v, %v; want it left at 3", st, err)
	}
	if d.Next() > 3 {
		t.Fatalf("Next() = %d, advanced past the refused block", d.Next())
	}
	got, found, err := dest.Get(t.Context(), ObjectName(3))
	if err != nil || !found || string(got) != foreignBlock {
		t.Fatalf("destination block 3 = %q, %v, %v; want it left as found", got, found, err)
	}
	if c := dest.putCount(ObjectName(3)); c != 0 {
		t.Fatalf("block 3 overwritten %d times", c)
	}
	for h := uint64(4); h < 6; h++ {
		if _, found, _ := dest.Get(t.Context(), ObjectName(h)); found {
			t.Fatalf("block %d published past the refused block 3", h)
		}
	}
}

func TestCorruptStateRefused(t *testing.T) {
	ctx := t.Context()
	for _, content := range []string{"", "{", `{"next_block": -4}`, `{"next":4}`, "garbage"} {
		t.Run(content, func(t *testing.T) {
			src := newMemSource(3, 64, 4)
			dest := newCountingDest(kindDir(t))
			statePath := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(statePath, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			d := newDist(t, src, dest, statePath, nil)
			if _, err := d.Reconcile(ctx); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("Reconcile = %v, want ErrCorruptState", err)
			}
			if n, err := d.RunOnce(ctx); !errors.Is(err, ErrCorruptState) || n != 0 {
				t.Fatalf("RunOnce = %d, %v; want ErrCorruptState", n, err)
			}
			if err := d.Run(ctx); !errors.Is(err, ErrCorruptState) {
				t.Fatalf("Run = %v, want ErrCorruptState", err)
			}
			if dest.totalPuts() != 0 {
				t.Fatalf("published %d blocks on a corrupt state file", dest.totalPuts())
			}
			raw, err := os.ReadFile(statePath)
			if err != nil || string(raw) != content {
				t.Fatalf("corrupt state file modified: %q, %v", raw, err)
			}
		})
	}
}

func kindDir(t testing.TB) Destination {
	d, err := NewDirDestination(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestStateAhead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		stored  []uint64 // blocks already in the destination
		state   uint64
		start   uint64
		wantErr error
		want    uint64 // next after Reconcile
	}{
		{name: "empty destination", state: 5, wantErr: ErrStateAhead},
		{name: "destination lacks the previous block", stored: heights(0, 3), state: 5, wantErr: ErrStateAhead},
		{name: "previous block stored", stored: heights(0, 4), state: 5, want: 5},
		{name: "state at configured start", state: 5, start: 5, want: 5},
		{name: "state below configured start", stored: heights(0, 2), state: 3, start: 5, want: 3},
		{name: "state zero", state: 0, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			src := newMemSource(8, 64, 5)
			inner := kindDir(t)
			for _, h := range tc.stored {
				if err := inner.Put(ctx, ObjectName(h), src.block(h)); err != nil {
					t.Fatal(err)
				}
			}
			dest := newCountingDest(inner)
			statePath := filepath.Join(t.TempDir(), "state.json")
			if err := SaveState(statePath, State{NextBlock: tc.state}); err != nil {
				t.Fatal(err)
			}
			d, err := New(Config{StatePath: statePath, Source: src, Dest: dest, Start: tc.start, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			// The source head (7) is beyond every case, but the reconcile
			// must not upload: it only verifies what is stored.
			st, err := d.Reconcile(ctx)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Reconcile = %+v, %v; want %v", st, err, tc.wantErr)
				}
			} else if err != nil || st.NextBlock != tc.want {
				t.Fatalf("Reconcile = %+v, %v; want %d", st, err, tc.want)
			}
			if dest.totalPuts() != 0 {
				t.Fatalf("Reconcile uploaded %d blocks", dest.totalPuts())
			}
			if got, err := LoadState(statePath); err != nil || (tc.wantErr != nil && got.NextBlock != tc.state) {
				t.Fatalf("state after refusal = %+v, %v; want it unchanged", got, err)
			}
		})
	}
}

func TestReconcileRepairsLaggingState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		state *uint64 // nil: no state file
	}{
		{name: "no state file"},
		{name: "state file behind", state: new(uint64(2))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			src := newMemSource(7, 128, 6)
			inner := kindDir(t)
			for h := range uint64(5) {
				if err := inner.Put(ctx, ObjectName(h), src.block(h)); err != nil {
					t.Fatal(err)
				}
			}
			dest := newCountingDest(inner)
			statePath := filepath.Join(t.TempDir(), "state.json")
			if tc.state != nil {
				if err := SaveState(statePath, State{NextBlock: *tc.state}); err != nil {
					t.Fatal(err)
				}
			}
			d := newDist(t, src, dest, statePath, nil)
			st, err := d.Reconcile(ctx)
			if err != nil || st.NextBlock != 5 || d.Next() != 5 {
				t.Fatalf("Reconcile = %+v, %v (Next %d); want 5", st, err, d.Next())
			}
			if got, err := LoadState(statePath); err != nil || got.NextBlock != 5 {
				t.Fatalf("state file = %+v, %v; want 5", got, err)
			}
			if dest.totalPuts() != 0 {
				t.Fatalf("Reconcile uploaded %d blocks; it must only verify", dest.totalPuts())
			}
			n, err := d.RunOnce(ctx)
			if err != nil || n != 2 {
				t.Fatalf("RunOnce = %d, %v; want 2", n, err)
			}
			checkPublished(t, src, dest, statePath, 6)
			if dest.totalPuts() != 2 {
				t.Fatalf("uploaded %d blocks, want 2 (5 and 6)", dest.totalPuts())
			}
		})
	}
}

func TestReconcileStopsWhereStoredBlockDiffers(t *testing.T) {
	// The state lags, and the stored block it would skip over is foreign:
	// refuse rather than advance past it.
	ctx := t.Context()
	src := newMemSource(5, 64, 7)
	inner := kindDir(t)
	for h := range uint64(2) {
		if err := inner.Put(ctx, ObjectName(h), src.block(h)); err != nil {
			t.Fatal(err)
		}
	}
	if err := inner.Put(ctx, ObjectName(2), []byte("foreign")); err != nil {
		t.Fatal(err)
	}
	statePath := filepath.Join(t.TempDir(), "state.json")
	d := newDist(t, src, inner, statePath, nil)
	if _, err := d.Reconcile(ctx); !errors.Is(err, ErrBlockMismatch) {
		t.Fatalf("Reconcile = %v, want ErrBlockMismatch", err)
	}
	if st, err := LoadState(statePath); err != nil || st.NextBlock != 2 {
		t.Fatalf("state = %+v, %v; want 2 (advanced over the two good blocks only)", st, err)
	}
}

func TestReconcileReportsGapWithoutFilling(t *testing.T) {
	ctx := t.Context()
	src := newMemSource(8, 128, 8)
	inner := kindDir(t)
	stored := []uint64{0, 1, 2, 5, 6}
	for _, h := range stored {
		if err := inner.Put(ctx, ObjectName(h), src.block(h)); err != nil {
			t.Fatal(err)
		}
	}
	dest := newCountingDest(inner)
	statePath := filepath.Join(t.TempDir(), "state.json")
	rec := newRecordHandler()
	d, err := New(Config{StatePath: statePath, Source: src, Dest: dest, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	st, err := d.Reconcile(ctx)
	if err != nil || st.NextBlock != 3 {
		t.Fatalf("Reconcile = %+v, %v; want 3 (stop at the gap)", st, err)
	}
	if w := rec.warnings(); len(w) != 1 || !strings.Contains(w[0], "beyond") {
		t.Fatalf("warnings = %q, want one about blocks beyond the gap", w)
	}
	for _, h := range []uint64{3, 4} {
		if _, found, _ := dest.Get(ctx, ObjectName(h)); found {
			t.Fatalf("Reconcile filled block %d", h)
		}
	}
	if dest.totalPuts() != 0 {
		t.Fatalf("Reconcile uploaded %d blocks", dest.totalPuts())
	}
	// Publishing then goes in order; 5 and 6 are verified, not uploaded.
	n, err := d.RunOnce(ctx)
	if err != nil || n != 5 {
		t.Fatalf("RunOnce = %d, %v; want 5", n, err)
	}
	checkPublished(t, src, dest, statePath, 7)
	for h, want := range map[uint64]int{3: 1, 4: 1, 5: 0, 6: 0, 7: 1} {
		if c := dest.putCount(ObjectName(h)); c != want {
			t.Errorf("block %d uploaded %d times, want %d", h, c, want)
		}
	}
}

func TestReconcileWaitsForSourceBehindDestination(t *testing.T) {
	// The destination holds blocks the source has not finalized yet (say,
	// the node was restored from an older snapshot): they are not verified
	// (the source cannot), reported, and verified once the source has them.
	ctx := t.Context()
	full := newMemSource(6, 64, 9)
	src := newMemSource(0, 0, 0)
	src.blocks = full.blocks[:3]
	inner := kindDir(t)
	for h := range uint64(6) {
		if err := inner.Put(ctx, ObjectName(h), full.block(h)); err != nil {
			t.Fatal(err)
		}
	}
	dest := newCountingDest(inner)
	statePath := filepath.Join(t.TempDir(), "state.json")
	rec := newRecordHandler()
	d, err := New(Config{StatePath: statePath, Source: src, Dest: dest, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	if st, err := d.Reconcile(ctx); err != nil || st.NextBlock != 3 {
		t.Fatalf("Reconcile = %+v, %v; want 3 (the source head + 1)", st, err)
	}
	if len(rec.warnings()) == 0 {
		t.Fatal("no warning about blocks beyond the source head")
	}
	src.mu.Lock()
	src.blocks = full.blocks
	src.mu.Unlock()
	if n, err := d.RunOnce(ctx); err != nil || n != 3 {
		t.Fatalf("RunOnce = %d, %v; want 3", n, err)
	}
	if dest.totalPuts() != 0 {
		t.Fatalf("uploaded %d blocks the destination already held", dest.totalPuts())
	}
}

func TestRunRetriesTransientErrors(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	src := newMemSource(6, 256, 10)
	src.headFails = 3
	src.blockFail[1] = 2
	src.blockFail[4] = 1
	dest := newCountingDest(kindDir(t))
	dest.putFails = 2
	statePath := filepath.Join(t.TempDir(), "state.json")
	done := make(chan struct{})
	var once sync.Once
	hooks := &Hooks{AfterSave: func(next uint64) error {
		if next == 6 {
			once.Do(func() { close(done) })
		}
		return nil
	}}
	d := newDist(t, src, dest, statePath, hooks)

	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	// Next may be read while Run works.
	var stopReader atomic.Bool
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for last := uint64(0); !stopReader.Load(); {
			n := d.Next()
			if n < last {
				t.Errorf("Next went backwards: %d after %d", n, last)
				return
			}
			last = n
		}
	}()
	select {
	case <-done:
	case err := <-runErr:
		t.Fatalf("Run returned %v before publishing everything", err)
	case <-time.After(deadlockGuard):
		t.Fatal("Run did not publish all blocks")
	}
	stopReader.Store(true)
	<-readerDone
	cancel()
	if err := <-runErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	checkPublished(t, src, dest, statePath, 5)
	for h := range uint64(6) {
		if c := dest.putCount(ObjectName(h)); c != 1 {
			t.Errorf("block %d uploaded %d times, want once", h, c)
		}
	}
	// 3 head failures + 2 block-1 failures + 1 block-4 failure + 2 put
	// failures, each failing one attempt.
	if got := metricValue(t, d.m.errors); got != 8 {
		t.Errorf("errors metric = %v, want 8 failed attempts", got)
	}
}

// signalSource wraps a Source, reporting each Head call on a channel and
// optionally blocking in Head until the context is done.
type signalSource struct {
	Source
	heads chan struct{}
	block bool
	fail  bool
}

func (s *signalSource) Head(ctx context.Context) (uint64, error) {
	select {
	case s.heads <- struct{}{}:
	default:
	}
	if s.block {
		<-ctx.Done()
		return 0, ctx.Err()
	}
	if s.fail {
		return 0, errTransient
	}
	return s.Source.Head(ctx)
}

func TestRunStopsPromptlyOnCancel(t *testing.T) {
	for _, tc := range []struct {
		name string
		src  *signalSource
	}{
		// Each waits an hour unless cancellation interrupts it.
		{"idle between polls", &signalSource{Source: newMemSource(2, 32, 11)}},
		{"in retry backoff", &signalSource{Source: newMemSource(2, 32, 11), fail: true}},
		{"blocked in the source", &signalSource{Source: newMemSource(2, 32, 11), block: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.src.heads = make(chan struct{}, 16)
			d, err := New(Config{
				StatePath:    filepath.Join(t.TempDir(), "state.json"),
				Source:       tc.src,
				Dest:         kindDir(t),
				PollInterval: time.Hour,
				Logger:       testLogger(t),
			})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- d.Run(ctx) }()
			// Wait for the Head call of RunOnce (the second; Reconcile
			// makes the first) or, when it fails, of the Reconcile.
			calls := 2
			if tc.src.fail || tc.src.block {
				calls = 1
			}
			for range calls {
				select {
				case <-tc.src.heads:
				case <-time.After(deadlockGuard):
					t.Fatal("Run never asked the source for its head")
				}
			}
			cancel()
			select {
			case err := <-runErr:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("Run = %v, want context.Canceled", err)
				}
			case <-time.After(deadlockGuard):
				t.Fatal("Run did not return after cancellation")
			}
		})
	}
}

func TestSourceBadBlockNotPublished(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block []byte
	}{
		{"empty block", []byte{}},
		{"nil block", nil},
		{"oversize block", make([]byte, MaxObjectSize+1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := newMemSource(3, 64, 12)
			src.blocks[1] = tc.block
			dest := newCountingDest(kindDir(t))
			statePath := filepath.Join(t.TempDir(), "state.json")
			d := newDist(t, src, dest, statePath, nil)
			n, err := d.RunOnce(t.Context())
			if err == nil || n != 1 {
				t.Fatalf("RunOnce = %d, %v; want block 0 then an error at 1", n, err)
			}
			if permanent(err) {
				t.Fatalf("a bad source block is treated as permanent: %v", err)
			}
			if st, _ := LoadState(statePath); st.NextBlock != 1 {
				t.Fatalf("state = %d, want 1", st.NextBlock)
			}
			if dest.putCount(ObjectName(1)) != 0 || dest.putCount(ObjectName(2)) != 0 {
				t.Fatal("published the bad block or skipped past it")
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	src := newMemSource(1, 8, 13)
	dest := kindDir(t)
	path := filepath.Join(t.TempDir(), "state.json")
	reg := prometheus.NewRegistry()
	if _, err := New(Config{StatePath: path, Source: src, Dest: dest, Metrics: reg}); err != nil {
		t.Fatalf("first registration: %v", err)
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no state path", Config{Source: src, Dest: dest}},
		{"no source", Config{StatePath: path, Dest: dest}},
		{"no destination", Config{StatePath: path, Source: src}},
		{"negative poll interval", Config{StatePath: path, Source: src, Dest: dest, PollInterval: -1}},
		{"negative max backoff", Config{StatePath: path, Source: src, Dest: dest, MaxBackoff: -1}},
		{"start out of range", Config{StatePath: path, Source: src, Dest: dest, Start: math.MaxUint64}},
		{"metrics registered twice", Config{StatePath: path, Source: src, Dest: dest, Metrics: reg}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if d, err := New(tc.cfg); err == nil {
				t.Fatalf("New = %v, want an error", d)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := newMemSource(4, 64, 14)
	inner := kindDir(t)
	if err := inner.Put(t.Context(), ObjectName(0), src.block(0)); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{
		StatePath: filepath.Join(t.TempDir(), "state.json"),
		Source:    src, Dest: inner, Metrics: reg, Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.RunOnce(t.Context()); err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{
		"teeup_distribute_blocks_uploaded_total": 3,
		"teeup_distribute_blocks_verified_total": 1,
		"teeup_distribute_next_block":            4,
		"teeup_distribute_errors_total":          0,
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		m := f.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			got[f.GetName()] = c.GetValue()
		} else {
			got[f.GetName()] = m.GetGauge().GetValue()
		}
	}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			t.Errorf("%s = %v (present %v), want %v", name, g, ok, v)
		}
	}
}

// metricValue reads a counter or gauge.
func metricValue(t testing.TB, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatalf("read metric: %v", err)
	}
	if c := out.GetCounter(); c != nil {
		return c.GetValue()
	}
	return out.GetGauge().GetValue()
}

// genSource generates 4 KiB blocks on demand, for benchmarks.
type genSource struct{ head atomic.Uint64 }

func (g *genSource) Head(context.Context) (uint64, error) { return g.head.Load(), nil }
func (g *genSource) Block(_ context.Context, h uint64) ([]byte, error) {
	b := make([]byte, 4096)
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], h*0x9E3779B97F4A7C15+uint64(i))
	}
	return b, nil
}

// BenchmarkPublishDir publishes one 4 KiB block per iteration to a
// directory: a Get, a durable file write and a durable state file write.
func BenchmarkPublishDir(b *testing.B) {
	src := &genSource{}
	dest, err := NewDirDestination(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	d, err := New(Config{
		StatePath: filepath.Join(b.TempDir(), "state.json"),
		Source:    src, Dest: dest,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx := b.Context()
	if _, err := d.RunOnce(ctx); err != nil { // block 0
		b.Fatal(err)
	}
	b.SetBytes(4096)
	for b.Loop() {
		src.head.Add(1)
		if n, err := d.RunOnce(ctx); err != nil || n != 1 {
			b.Fatalf("RunOnce = %d, %v", n, err)
		}
	}
}
