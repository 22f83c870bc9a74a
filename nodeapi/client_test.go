package nodeapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// serveAdmin serves handler on a unix socket and returns an admin client.
func serveAdmin(t *testing.T, h http.Handler) *AdminClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "a.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := NewAdminClient(sock)
	t.Cleanup(c.Close)
	return c
}

func TestClientErrors(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathAdminTx, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(Error{Code: CodeClosedForUpgrade, Message: "closed for upgrade: retry later"})
	})
	mux.HandleFunc("GET "+PathHead, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("boom"))
	})
	mux.HandleFunc("GET "+PathBlocks+"/{h}", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(Block{Height: 1, Raw: "zz"})
	})
	mux.HandleFunc("GET "+PathStatus, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("{not json")) })
	c := serveAdmin(t, mux)
	ctx := context.Background()

	_, err := c.Submit(ctx, []byte{1})
	if !IsCode(err, CodeClosedForUpgrade) || !strings.Contains(err.Error(), "closed for upgrade") {
		t.Fatalf("Submit = %v", err)
	}
	if _, err := c.Head(ctx); err == nil || !strings.Contains(err.Error(), "HTTP 500") || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("Head = %v", err)
	}
	if _, err := c.RawBlock(ctx, 1); err == nil || !strings.Contains(err.Error(), "raw encoding") {
		t.Fatalf("RawBlock = %v", err)
	}
	if _, err := c.Status(ctx); err == nil || !strings.Contains(err.Error(), "decode response") {
		t.Fatalf("Status = %v", err)
	}
	if IsCode(nil, CodeRejected) {
		t.Fatal("IsCode(nil)")
	}
	dead := NewAdminClient(filepath.Join(t.TempDir(), "none.sock"))
	if _, err := dead.Status(ctx); err == nil || !strings.Contains(err.Error(), "admin socket") {
		t.Fatalf("Status on a dead socket = %v", err)
	}
}

func TestParseMeasurements(t *testing.T) {
	m, err := ParseMeasurements([]string{strings.Repeat("ab", 32) + "," + strings.Repeat("cd", 32), ""})
	if err != nil || len(m) != 2 {
		t.Fatalf("ParseMeasurements = %v, %v", m, err)
	}
	if _, err := ParseMeasurements([]string{"nothex"}); err == nil {
		t.Fatal("bad hex accepted")
	}
	if _, err := Dial(DialConfig{Addr: "x:1"}); err == nil || !strings.Contains(err.Error(), "required") {
		t.Fatalf("Dial without root = %v", err)
	}
	if _, err := Dial(DialConfig{Addr: "x:1", RootPath: "/nonexistent", MREnclaves: []string{strings.Repeat("ab", 32)}}); err == nil {
		t.Fatal("Dial with a missing root succeeded")
	}
}

// TestClientKeepsItsConnections: a client with a pool of n connections
// serves rounds of n concurrent requests over the same n attested
// connections instead of handshaking again for every round, and a client
// that reconnects resumes its TLS session.
func TestClientKeepsItsConnections(t *testing.T) {
	dir := t.TempDir()
	ca, err := sim.InitCA(dir + "/ca")
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.InitPlatform(dir+"/p", ca)
	if err != nil {
		t.Fatal(err)
	}
	id := tee.Identity{UniqueID: tee.Measurement{7}}
	creds, err := attest.NewCredentials(plat.NewEnclave(id), [attest.ExtraSize]byte{})
	if err != nil {
		t.Fatal(err)
	}
	const n, rounds = 8, 10
	var arrived sync.WaitGroup
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathHead, func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait() // every request of a round is in flight at once
		_ = json.NewEncoder(w).Encode(Head{Height: 1})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux}
	go srv.Serve(tls.NewListener(ln, attest.ServerConfig(creds, nil)))
	t.Cleanup(func() { srv.Close() })
	v := &attest.Verifier{Quotes: plat.Verifier(), Policy: attest.Exact(id.UniqueID)}
	ctx := context.Background()
	round := func(c *Client) {
		arrived.Add(n)
		var wg sync.WaitGroup
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Head(ctx); err != nil {
					t.Error(err)
				}
			}()
		}
		wg.Wait()
	}
	pooled := NewClientWithOptions(ln.Addr().String(), v, ClientOptions{Conns: n})
	defer pooled.Close()
	small := NewClientWithOptions(ln.Addr().String(), v, ClientOptions{Conns: 1})
	defer small.Close()
	for range rounds {
		round(pooled)
		round(small)
	}
	p, s := pooled.Stats(), small.Stats()
	t.Logf("connections opened for %d rounds of %d requests: pool of %d: %+v, pool of 1: %+v", rounds, n, n, p, s)
	if p.Opened < n || p.Opened > 2*n {
		t.Errorf("a pool of %d opened %d connections for %d rounds, want %d to %d", n, p.Opened, rounds, n, 2*n)
	}
	if s.Opened < rounds*(n-1) {
		t.Errorf("a pool of 1 opened only %d connections: the comparison shows nothing", s.Opened)
	}
	if s.Resumed == 0 {
		t.Error("no reconnection resumed its TLS session")
	}
}

// TestDialUsesTheGivenDialer: a client made with DialConfig.DialContext
// opens its connections through it (the isolated devnet dials from another
// network namespace that way).
func TestDialUsesTheGivenDialer(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca")
	if _, err := sim.InitCA(ca); err != nil {
		t.Fatal(err)
	}
	errDial := errors.New("dialer called")
	var got []string
	c, err := Dial(DialConfig{Addr: "10.77.0.2:7201", RootPath: filepath.Join(ca, sim.RootCertFile), MREnclaves: []string{strings.Repeat("ab", 32)},
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			got = append(got, network+" "+addr)
			return nil, errDial
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Head(context.Background()); !errors.Is(err, errDial) {
		t.Fatalf("Head = %v, want the dialer's error", err)
	}
	if len(got) == 0 || got[0] != "tcp 10.77.0.2:7201" {
		t.Fatalf("dialer saw %v", got)
	}
}
