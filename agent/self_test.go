package agent

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/selfupgrade"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// TestHeldStateMovesToSuccessor: the old agent's held state, unsealed,
// bundled and sealed by the successor to itself (as RunSuccessor does),
// is installed by the successor sealed to its own MRENCLAVE — readable by
// it, no longer by the old agent — and installing twice (a crash before
// the journal write) changes nothing.
func TestHeldStateMovesToSuccessor(t *testing.T) {
	root := t.TempDir()
	ca, err := sim.InitCA(filepath.Join(root, "ca"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := sim.InitPlatform(filepath.Join(root, "platform"), ca)
	if err != nil {
		t.Fatal(err)
	}
	oldE := p.NewEnclave(tee.Identity{UniqueID: tee.Measurement{0xa}})
	newE := p.NewEnclave(tee.Identity{UniqueID: tee.Measurement{0xb}})
	dir := layout.Agent(filepath.Join(root, "agent"))
	if err := os.MkdirAll(dir.HeldKeysDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	held := map[string]string{"1.0.0-to-2.0.0-a": "keys of a", "1.0.0-to-2.0.0-b": "keys of b"}
	for id, keys := range held {
		blob, err := tee.Seal(oldE, tee.SealUnique, []byte(keys), heldKeysAD(id))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir.HeldKeys(id), blob, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// Not held state: skipped.
	if err := os.WriteFile(filepath.Join(dir.HeldKeysDir(), "notes.txt"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	old := &selfDriver{a: &Agent{enclave: oldE, dir: dir, log: log}}
	st, err := old.heldState()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Entries) != len(held) {
		t.Fatalf("%d held-state entries, want %d", len(st.Entries), len(held))
	}
	secret, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	rec := &selfupgrade.Record{ID: "agent-to-2.0.0-x"}
	bundle, err := tee.Seal(newE, tee.SealUnique, secret, successorAD(rec.ID))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir.SuccessorDir(), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir.SuccessorState(rec.ID), bundle, 0o600); err != nil {
		t.Fatal(err)
	}
	// The old agent cannot read the bundle it handed over.
	if err := old.install(rec); err == nil {
		t.Fatal("the old agent installed a bundle sealed to the new one")
	}
	successor := &selfDriver{a: &Agent{enclave: newE, dir: dir, log: log, faults: noFaults{}}}
	for range 2 {
		if err := successor.install(rec); err != nil {
			t.Fatal(err)
		}
	}
	for id, keys := range held {
		blob, err := os.ReadFile(dir.HeldKeys(id))
		if err != nil {
			t.Fatal(err)
		}
		got, err := tee.Unseal(newE, blob, heldKeysAD(id))
		if err != nil || string(got) != keys {
			t.Fatalf("%s: the successor unseals %q, %v; want %q", id, got, err, keys)
		}
		if _, err := tee.Unseal(oldE, blob, heldKeysAD(id)); err == nil {
			t.Fatalf("%s: the old agent can still unseal it", id)
		}
	}
}

// TestRetryGate: after each failure the next attempt waits twice as long
// (500 ms up to 30 s); a success lets the next attempt run at once.
func TestRetryGate(t *testing.T) {
	var g retryGate
	now := time.Unix(1000, 0)
	if !g.ready(now) {
		t.Fatal("a fresh gate is not ready")
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	for i, w := range want {
		if d := g.failed(now); d != w {
			t.Fatalf("failure %d: wait %v, want %v", i+1, d, w)
		}
		if g.ready(now.Add(w - time.Millisecond)) {
			t.Fatalf("failure %d: ready before its back-off ended", i+1)
		}
		if !g.ready(now.Add(w)) {
			t.Fatalf("failure %d: not ready once its back-off ended", i+1)
		}
	}
	for range 20 {
		g.failed(now)
	}
	if d := g.failed(now); d != 30*time.Second {
		t.Fatalf("wait after many failures %v, want the 30s cap", d)
	}
	g.succeeded()
	if !g.ready(now) {
		t.Fatal("not ready after a success")
	}
	if d := g.failed(now); d != 500*time.Millisecond {
		t.Fatalf("first wait after a success %v, want 500ms", d)
	}
}
