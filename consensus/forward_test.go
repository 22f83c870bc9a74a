package consensus

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestForwardOverAttestedPeers: requests forwarded to a peer reach its
// Forwarded handler over one persistent connection, concurrently, each
// answer to its request; after the peer restarts, Forward dials again.
func TestForwardOverAttestedPeers(t *testing.T) {
	c, m, dirs := startCluster(t, 3, 0)
	waitFor(t, "a leader", func() bool { return c.leader() != nil })
	from := c.nodes[2]
	from.mu.Lock()
	tr := from.tr
	from.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := fmt.Sprintf("req-%d", i)
			ans, err := tr.Forward(ctx, 1, []byte(req))
			if err != nil {
				errs <- err
				return
			}
			if want := "2>1:" + req; string(ans) != want {
				errs <- fmt.Errorf("answer %q, want %q", ans, want)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	tr.fwdMu.Lock()
	conns := len(tr.fwd)
	tr.fwdMu.Unlock()
	if conns != 1 {
		t.Fatalf("%d forwarding connections, want 1", conns)
	}

	c.nodes[1].stop()
	if _, err := tr.Forward(ctx, 1, []byte("while down")); err == nil {
		t.Fatal("forwarded to a stopped peer")
	}
	c.start(1, m, dirs[1])
	waitFor(t, "forwarding again after the restart", func() bool {
		ans, err := tr.Forward(ctx, 1, []byte("again"))
		return err == nil && string(ans) == "2>1:again"
	})
}

// TestForwardRefusesOtherMeasurement: a node of another MRENCLAVE cannot
// open a forwarding connection.
func TestForwardRefusesOtherMeasurement(t *testing.T) {
	c := newCluster(t, 3)
	good := c.start(1, measurement(1), "")
	c.start(2, measurement(1), "")
	imp := c.start(3, measurement(2), "")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitFor(t, "both transports", func() bool { return good.running() && imp.running() })
	imp.mu.Lock()
	tr := imp.tr
	imp.mu.Unlock()
	if ans, err := tr.Forward(ctx, 1, []byte("x")); err == nil {
		t.Fatalf("an impostor forwarded and got %q", ans)
	}
}
