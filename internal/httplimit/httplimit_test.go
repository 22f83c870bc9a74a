package httplimit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := (Config{}).WithDefaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	d := (Config{}).WithDefaults()
	if d.MaxConns != DefaultMaxConns || d.Burst != 2*DefaultRate || d.MaxBody != DefaultMaxBody || d.MaxConnsPerSource != DefaultMaxConnsPerSource {
		t.Fatalf("defaults %+v", d)
	}
	if small := (Config{MaxConns: 10}).WithDefaults(); small.MaxConnsPerSource != 10 {
		t.Fatalf("per-source default above the total: %d", small.MaxConnsPerSource)
	}
	if off := (Config{Rate: -1}).WithDefaults(); off.Validate() != nil || off.Rate >= 0 {
		t.Fatalf("rate off: %+v", off)
	}
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"negative read timeout", Config{ReadTimeout: -time.Second}, "read timeout -1s"},
		{"read shorter than header", Config{ReadTimeout: time.Second, ReadHeaderTimeout: 2 * time.Second}, "shorter than the read header timeout"},
		{"negative max conns", Config{MaxConns: -1}, "max connections -1"},
		{"per source above total", Config{MaxConns: 4, MaxConnsPerSource: 5}, "max connections per source 5"},
		{"negative burst", Config{Burst: -1}, "burst -1"},
		{"negative body", Config{MaxBody: -1}, "max body -1"},
		{"negative header", Config{MaxHeaderBytes: -1}, "max header -1"},
		{"negative sources", Config{MaxTrackedSources: -1}, "max tracked sources -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.WithDefaults().Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
			if _, err := New(tt.cfg); err == nil {
				t.Fatal("New accepted it")
			}
		})
	}
}

func TestRateTable(t *testing.T) {
	rt := newRateTable(10, 3, 2)
	now := time.Unix(1000, 0)
	for i := range 3 {
		if ok, _ := rt.allow("a", now); !ok {
			t.Fatalf("request %d of a burst of 3 refused", i+1)
		}
	}
	ok, wait := rt.allow("a", now)
	if ok || wait != 100*time.Millisecond {
		t.Fatalf("4th request: %v, wait %s; want refused, 100ms", ok, wait)
	}
	if ok, _ := rt.allow("b", now); !ok {
		t.Fatal("another source was limited")
	}
	if ok, _ := rt.allow("a", now.Add(100*time.Millisecond)); !ok {
		t.Fatal("a refilled token was refused")
	}
	if ok, _ := rt.allow("a", now.Add(100*time.Millisecond)); ok {
		t.Fatal("a token was spent twice")
	}
	// The bucket never holds more than the burst.
	later := now.Add(time.Hour)
	for i := range 4 {
		ok, _ := rt.allow("a", later)
		if ok != (i < 3) {
			t.Fatalf("after an hour, request %d: %v", i+1, ok)
		}
	}
	// Bounded memory: a third source pushes out the least recently seen.
	rt.allow("c", later)
	if rt.len() != 2 {
		t.Fatalf("%d sources tracked, bound 2", rt.len())
	}
	if _, ok := rt.buckets["b"]; ok {
		t.Fatal("the least recently seen source was kept")
	}
}

// fakeConn is a connection from a chosen address that records Close.
type fakeConn struct {
	net.Conn
	addr   net.Addr
	mu     sync.Mutex
	closed bool
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.addr }
func (c *fakeConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	return nil
}

func (c *fakeConn) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

func from(ip string, port int) *fakeConn {
	return &fakeConn{addr: &net.TCPAddr{IP: net.ParseIP(ip), Port: port}}
}

func TestConnTable(t *testing.T) {
	tab := newConnTable(4, 3)
	a1, a2, a3, a4 := from("10.0.0.1", 1), from("10.0.0.1", 2), from("10.0.0.1", 3), from("10.0.0.1", 4)
	c1, c2, c3 := tab.admit(a1), tab.admit(a2), tab.admit(a3)
	if c1 == nil || c2 == nil || c3 == nil {
		t.Fatal("connections within the bounds refused")
	}
	tab.setBusy(c1, true)
	// Source at its bound: its longest-waiting connection (c2) makes room.
	c4 := tab.admit(a4)
	if c4 == nil || !a2.isClosed() || a1.isClosed() || a3.isClosed() {
		t.Fatalf("per-source eviction: admitted %v, closed 1:%v 2:%v 3:%v", c4 != nil, a1.isClosed(), a2.isClosed(), a3.isClosed())
	}
	// Another source takes the last place in the total.
	b1 := from("10.0.0.2", 1)
	if tab.admit(b1) == nil {
		t.Fatal("another source refused below the total bound")
	}
	// Total bound: the longest-waiting connection of any source goes (c3).
	b2 := from("10.0.0.2", 2)
	if tab.admit(b2) == nil || !a3.isClosed() {
		t.Fatalf("total eviction: closed 3:%v", a3.isClosed())
	}
	st := tab.stats()
	if st.Open != 4 || st.Busy != 1 || st.Evicted != 2 || st.Refused != 0 || st.Accepted != 6 {
		t.Fatalf("stats %+v", st)
	}
	// Everything busy: a new connection is refused, nothing is closed.
	for _, c := range tab.waitingConns() {
		tab.setBusy(c, true)
	}
	if tab.admit(from("10.0.0.3", 1)) != nil {
		t.Fatal("admitted with every connection busy")
	}
	if st := tab.stats(); st.Refused != 1 || st.Open != 4 || st.Busy != 4 {
		t.Fatalf("stats after refusal %+v", st)
	}
	// Closing releases the place, once; a connection back to idle is evictable again.
	c1.Close()
	c1.Close()
	if st := tab.stats(); st.Open != 3 || st.Busy != 3 {
		t.Fatalf("after close %+v", st)
	}
	tab.setBusy(c4, false)
	if tab.admit(from("10.0.0.3", 2)) == nil {
		t.Fatal("refused with a free place")
	}
	if tab.admit(from("10.0.0.3", 3)) == nil || !a4.isClosed() {
		t.Fatal("the idle connection was not evicted")
	}
	if len(tab.sources) != 2 {
		t.Fatalf("%d sources tracked, want 2 (10.0.0.1 left)", len(tab.sources))
	}
}

// waitingConns lists the connections waiting between requests.
func (t *connTable) waitingConns() []*conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []*conn
	for e := t.waiting.Front(); e != nil; e = e.Next() {
		out = append(out, e.Value.(*conn))
	}
	return out
}

// testServer serves a handler through a Limiter on loopback (plain HTTP:
// the limits do not depend on TLS).
type testServer struct {
	l    *Limiter
	addr string
}

func newTestServer(t *testing.T, cfg Config, h http.Handler) *testServer {
	t.Helper()
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := l.Server(h)
	go srv.Serve(l.Listener(ln))
	t.Cleanup(func() { srv.Close() })
	return &testServer{l: l, addr: ln.Addr().String()}
}

// client returns an HTTP client whose connections come from the loopback
// address ip (any 127.0.0.0/8 address is local on Linux).
func client(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 10 * time.Second}
}

// dialFrom opens a raw TCP connection from ip.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			fmt.Fprint(w, TooLargeMessage(tooLarge.Limit))
			return
		}
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	fmt.Fprint(w, "ok")
})

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestRateLimitAnswers429(t *testing.T) {
	s := newTestServer(t, Config{Rate: 1, Burst: 3}, okHandler)
	flood, other := client("127.0.0.1"), client("127.0.0.2")
	url := "http://" + s.addr + "/"
	for i := range 3 {
		if code, _ := get(t, flood, url); code != http.StatusOK {
			t.Fatalf("request %d within the burst: %d", i+1, code)
		}
	}
	resp, err := flood.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("over the limit: %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	var e struct{ Code, Error string }
	if err := json.Unmarshal(body, &e); err != nil || e.Code != string(ReasonRateLimited) ||
		!strings.Contains(e.Error, "more than 1 requests per second (burst 3) from 127.0.0.1") {
		t.Fatalf("429 body %q (%v)", body, err)
	}
	if code, _ := get(t, other, url); code != http.StatusOK {
		t.Fatalf("another source was limited: %d", code)
	}
	if st := s.l.Stats(); st.RateLimited != 1 || st.Sources != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestBodyLimitAnswers413(t *testing.T) {
	var rejected []Reason
	var mu sync.Mutex
	cfg := Config{MaxBody: 100, Reject: func(w http.ResponseWriter, _ *http.Request, status int, reason Reason, msg string) {
		mu.Lock()
		rejected = append(rejected, reason)
		mu.Unlock()
		w.WriteHeader(status)
		fmt.Fprint(w, "custom: "+msg)
	}}
	s := newTestServer(t, cfg, okHandler)
	c := client("127.0.0.1")
	url := "http://" + s.addr + "/"
	post := func(body io.Reader) (int, string) {
		resp, err := c.Post(url, "application/json", body)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := post(strings.NewReader(strings.Repeat("x", 100))); code != http.StatusOK {
		t.Fatalf("body at the bound: %d %s", code, body)
	}
	// Declared too long: refused before the handler runs.
	if code, body := post(strings.NewReader(strings.Repeat("x", 101))); code != http.StatusRequestEntityTooLarge || body != "custom: request body too large: at most 100 bytes accepted" {
		t.Fatalf("declared oversized body: %d %q", code, body)
	}
	// Not declared (chunked): the handler's read fails with MaxBytesError.
	pr, pw := io.Pipe()
	go func() {
		pw.Write([]byte(strings.Repeat("y", 300)))
		pw.Close()
	}()
	if code, body := post(pr); code != http.StatusRequestEntityTooLarge || !strings.Contains(body, "at most 100 bytes") {
		t.Fatalf("chunked oversized body: %d %q", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(rejected) != 1 || rejected[0] != ReasonTooLarge {
		t.Fatalf("Reject called with %v", rejected)
	}
}

// memory returns the live heap after a collection.
func memory() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// awaitStats polls the limiter until cond holds (bounded).
func awaitStats(t *testing.T, l *Limiter, what string, cond func(Stats) bool) Stats {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := l.Stats()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: never reached; stats %+v", what, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestIdleFlood: thousands of connections that send nothing, or sent one
// request and keep the connection open, from one source and from many;
// another client is served throughout, open connections never exceed the
// bounds, and the server's goroutines and heap stay bounded.
func TestIdleFlood(t *testing.T) {
	const maxConns, perSource = 64, 32
	s := newTestServer(t, Config{MaxConns: maxConns, MaxConnsPerSource: perSource, IdleTimeout: time.Minute, ReadHeaderTimeout: time.Minute, ReadTimeout: time.Minute}, okHandler)
	url := "http://" + s.addr + "/"
	legit := client("127.0.0.2")
	if code, _ := get(t, legit, url); code != http.StatusOK {
		t.Fatal(code)
	}
	baseGoroutines, baseHeap := runtime.NumGoroutine(), memory()

	var keepalive []net.Conn
	for round := range 4 {
		// Silent connections from one source, then from many.
		for i := range 200 {
			ip := "127.0.0.1"
			if i%2 == 1 {
				ip = fmt.Sprintf("127.0.1.%d", 1+i%50)
			}
			dialFrom(t, ip, s.addr)
		}
		// Keep-alive connections left idle after one request.
		for i := range 50 {
			c := dialFrom(t, fmt.Sprintf("127.0.2.%d", 1+i%10), s.addr)
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				resp.Body.Close()
				keepalive = append(keepalive, c)
			} // else: evicted before its request arrived; it was waiting too
		}
		st := s.l.Stats()
		if st.Open > maxConns {
			t.Fatalf("round %d: %d open connections, bound %d", round, st.Open, maxConns)
		}
		// The other client is served in the middle of the flood.
		if code, body := get(t, legit, url); code != http.StatusOK || body != "ok" {
			t.Fatalf("round %d: other client got %d %q", round, code, body)
		}
	}
	st := s.l.Stats()
	t.Logf("after the flood: %+v, %d keep-alive connections answered", st, len(keepalive))
	if st.Evicted < 4*250-maxConns {
		t.Errorf("evicted %d connections, want at least %d", st.Evicted, 4*250-maxConns)
	}
	if g := runtime.NumGoroutine() - baseGoroutines; g > maxConns+8 {
		t.Errorf("%d more goroutines than before the flood, bound %d", g, maxConns+8)
	}
	// A server connection costs a few KiB (bufio buffers, a goroutine);
	// 1,000 flood connections were closed, so the heap must not hold them.
	grown := int64(memory()) - int64(baseHeap)
	t.Logf("heap grew by %d KiB (%d open connections)", grown>>10, st.Open)
	if grown > maxConns*64<<10+8<<20 {
		t.Errorf("heap grew by %d bytes during a flood bounded to %d connections", grown, maxConns)
	}
}

// TestSlowBodyFlood: connections that send a header and then dribble their
// body hold a place only until the read timeout; a source cannot hold more
// than its bound, and another client is served meanwhile.
func TestSlowBodyFlood(t *testing.T) {
	const perSource = 16
	s := newTestServer(t, Config{MaxConns: 64, MaxConnsPerSource: perSource, ReadTimeout: 2 * time.Second, ReadHeaderTimeout: time.Second}, okHandler)
	url := "http://" + s.addr + "/"
	legit := client("127.0.0.2")
	var slow []net.Conn
	for range 3 * perSource {
		c := dialFrom(t, "127.0.0.1", s.addr)
		fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
		c.Write([]byte("{"))
		slow = append(slow, c)
		// The server counts it busy once it reads the header; refused ones are closed.
		awaitStats(t, s.l, "slow connection accepted or refused", func(st Stats) bool {
			return st.Busy+int(st.Refused) >= min(len(slow), perSource)+max(0, len(slow)-perSource)
		})
	}
	st := s.l.Stats()
	if st.Busy != perSource || st.Refused != 2*perSource {
		t.Fatalf("slow bodies from one source: %+v, want %d busy and %d refused", st, perSource, 2*perSource)
	}
	if code, _ := get(t, legit, url); code != http.StatusOK {
		t.Fatalf("other client during the flood: %d", code)
	}
	// The read timeout frees every place.
	awaitStats(t, s.l, "slow bodies timed out", func(st Stats) bool { return st.Busy == 0 && st.Open <= 1 })
	if code, _ := get(t, client("127.0.0.1"), url); code != http.StatusOK {
		t.Fatalf("the flooding source after its connections timed out: %d", code)
	}
}
