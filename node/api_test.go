package node

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/attest"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/tee"
	"github.com/teeup/teeup/tee/sim"
)

// TestClientAPILimits runs the client API's real server (attested TLS,
// the limits from the node config, the client mux) and checks the answers
// to an oversized body and to a source over its rate.
func TestClientAPILimits(t *testing.T) {
	self := nodeMR("1.0.0")
	l := openGovLedger(t, self)
	n := testNode(t, l, self)
	n.cfg.ClientLimits = ClientLimits{RateLimit: 1, RateBurst: 4}
	n.cfg = n.cfg.WithDefaults()
	if err := clientHTTPLimits(n.cfg).WithDefaults().Validate(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ca, err := sim.InitCA(dir + "/ca")
	if err != nil {
		t.Fatal(err)
	}
	plat, err := sim.InitPlatform(dir+"/p", ca)
	if err != nil {
		t.Fatal(err)
	}
	if n.creds, err = attest.NewCredentials(plat.NewEnclave(tee.Identity{UniqueID: self}), [attest.ExtraSize]byte{}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv, tln, err := n.clientServer(ln)
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(tln)
	t.Cleanup(func() { srv.Close() })
	c := nodeapi.NewClient(ln.Addr().String(), &attest.Verifier{Quotes: plat.Verifier(), Policy: attest.Exact(self)})
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	// 1: a transaction far over the body bound.
	_, err = c.Submit(ctx, make([]byte, maxRequestBody))
	if !nodeapi.IsCode(err, nodeapi.CodeTooLarge) || !strings.Contains(err.Error(), "request body too large: at most 65536 bytes accepted") {
		t.Fatalf("oversized submission: %v", err)
	}
	// 2-4: within the burst of 4.
	for i := range 3 {
		if _, err := c.Head(ctx); err != nil {
			t.Fatalf("request %d within the burst: %v", i+2, err)
		}
	}
	// 5: over the rate.
	_, err = c.Head(ctx)
	if !nodeapi.IsCode(err, nodeapi.CodeRateLimited) || !strings.Contains(err.Error(), "rate limited: more than 1 requests per second (burst 4) from 127.0.0.1") {
		t.Fatalf("request over the rate: %v", err)
	}
}

// TestDecodeBodyRefusesOversizedBodies: the admin API (no connection
// limits on its unix socket) answers an oversized body with 413 and a
// malformed one with 400, both as JSON errors.
func TestDecodeBodyRefusesOversizedBodies(t *testing.T) {
	self := nodeMR("1.0.0")
	n := testNode(t, openGovLedger(t, self), self)
	tests := []struct {
		name   string
		body   string
		status int
		code   string
		msg    string
	}{
		{"oversized", `{"open": true, "reason": "` + strings.Repeat("x", maxRequestBody) + `"}`, http.StatusRequestEntityTooLarge, nodeapi.CodeTooLarge, "at most 65536 bytes"},
		{"truncated", `{"open": tr`, http.StatusBadRequest, nodeapi.CodeBadRequest, "request body: unexpected EOF"},
		{"unknown field", `{"opened": true}`, http.StatusBadRequest, nodeapi.CodeBadRequest, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			n.adminMux().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, nodeapi.PathIngress, strings.NewReader(tt.body)))
			if rec.Code != tt.status || !strings.Contains(rec.Body.String(), `"code": "`+tt.code+`"`) || !strings.Contains(rec.Body.String(), tt.msg) {
				t.Fatalf("%d %s", rec.Code, rec.Body.String())
			}
		})
	}
}

func TestClientLimitsConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "node.json")
	if err := os.WriteFile(p, []byte(`{"node_id": 1, "genesis": "g", "data_dir": "d",
		"client_limits": {"max_connections": 100, "max_connections_per_source": 10, "rate_limit": 50, "rate_burst": 60,
			"read_header_timeout": "2s", "read_timeout": "3s", "write_timeout": "30s", "idle_timeout": "1m"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	hl := clientHTTPLimits(loaded.WithDefaults())
	if hl.MaxConns != 100 || hl.MaxConnsPerSource != 10 || hl.Rate != 50 || hl.Burst != 60 || hl.ReadHeaderTimeout != 2*time.Second ||
		hl.ReadTimeout != 3*time.Second || hl.WriteTimeout != 30*time.Second || hl.IdleTimeout != time.Minute || hl.MaxBody != maxRequestBody {
		t.Fatalf("limits from the file: %+v", hl)
	}
	if err := os.WriteFile(p, []byte(`{"node_id": 1, "genesis": "g", "data_dir": "d", "client_limits": {"max_conns": 1}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "unknown field") {
		t.Fatalf("misspelt limit: %v", err)
	}

	base := Config{NodeID: 1, Genesis: "g", DataDir: "d"}
	d := base.WithDefaults()
	if time.Duration(d.ClientLimits.WriteTimeout) != 20*time.Second {
		t.Fatalf("default write timeout %s, want submit_timeout + 5s", time.Duration(d.ClientLimits.WriteTimeout))
	}
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		limits ClientLimits
		want   string
	}{
		{"write timeout within the submit timeout", ClientLimits{WriteTimeout: Duration(15 * time.Second)}, "write_timeout 15s must exceed submit_timeout 15s"},
		{"per source above the total", ClientLimits{MaxConnections: 10, MaxConnectionsPerSource: 11}, "max connections per source 11"},
		{"negative connections", ClientLimits{MaxConnections: -1}, "max connections -1"},
		{"negative read timeout", ClientLimits{ReadTimeout: Duration(-time.Second)}, "read timeout -1s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			c.ClientLimits = tt.limits
			if err := c.WithDefaults().Validate(); err == nil || !strings.Contains(err.Error(), "client_limits") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestClientGate: the client API's answer to a payment or query by the
// node's ingress and sync state — 503 with a typed code (closed for an
// upgrade, catching up, diverged), the reason as the message — or nil
// (serve) for a current node with ingress open.
func TestClientGate(t *testing.T) {
	current := classifySync(nodeapi.Sync{NetworkHeight: 10, CommitIndex: 20}, syncFacts{height: 10, applied: 20, leader: 1})
	behind := classifySync(nodeapi.Sync{NetworkHeight: 10, CommitIndex: 20}, syncFacts{height: 4, applied: 20, leader: 1})
	diverged := classifySync(nodeapi.Sync{NetworkHeight: 10, CommitIndex: 20}, syncFacts{height: 10, applied: 20, leader: 1, divergedAt: 7, divergedBy: 2})
	removed := classifySync(nodeapi.Sync{NetworkHeight: 10, CommitIndex: 20}, syncFacts{height: 10, applied: 20, leader: 1, removedAt: 9})
	for _, tc := range []struct {
		name    string
		open    bool
		v       nodeapi.Sync
		serve   bool
		code    string
		message string
	}{
		{"current, ingress open", true, current, true, "", ""},
		{"catching up", true, behind, false, nodeapi.CodeCatchingUp, "node is catching up: height 4 of 10"},
		{"diverged", true, diverged, false, nodeapi.CodeDiverged, diverged.Reason},
		{"removed", true, removed, false, nodeapi.CodeCatchingUp, "this node was removed from the network at height 9"},
		{"ingress closed", false, current, false, nodeapi.CodeClosedForUpgrade,
			"closed for upgrade: this network is not accepting client requests right now; retry later (upgrade to 2.0.0)"},
		{"ingress closed while catching up", false, behind, false, nodeapi.CodeClosedForUpgrade,
			"closed for upgrade: this network is not accepting client requests right now; retry later (upgrade to 2.0.0)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			syncRead := false
			ref := clientGate(tc.open, func() string { return "upgrade to 2.0.0" }, func() syncView { syncRead = true; return syncView{tc.v} })
			if !tc.open && syncRead {
				t.Error("the sync view was read with ingress closed")
			}
			if tc.serve {
				if ref != nil {
					t.Fatalf("refused a current node's request: %+v", ref)
				}
				return
			}
			if ref == nil {
				t.Fatal("served")
			}
			w := httptest.NewRecorder()
			ref.write(w)
			assertAPIError(t, w.Result(), http.StatusServiceUnavailable, tc.code, tc.message)
		})
	}
}

// TestClientMuxRefusesWhileNotCurrent sends requests to the client mux of
// a node that is catching up, then diverged: payments, transaction and
// account queries get 503 with the sync state's code; block reads are
// served.
func TestClientMuxRefusesWhileNotCurrent(t *testing.T) {
	self := nodeMR("1.0.0")
	l := openGovLedger(t, self)
	n := testNode(t, l, self)
	n.sync = newSyncTracker(n)
	setView := func(v nodeapi.Sync) {
		n.sync.mu.Lock()
		defer n.sync.mu.Unlock()
		// A view computed "in the future" stays fresh: current() returns it
		// without recomputing it from raft (which this node has not).
		n.sync.view, n.sync.at = syncView{v}, time.Now().Add(time.Hour)
	}
	mux := n.clientMux()
	for _, tc := range []struct {
		name string
		v    nodeapi.Sync
		code string
	}{
		{"catching up", classifySync(nodeapi.Sync{NetworkHeight: 30}, syncFacts{height: 12, leader: 1}), nodeapi.CodeCatchingUp},
		{"diverged", classifySync(nodeapi.Sync{NetworkHeight: 12}, syncFacts{height: 12, leader: 1, divergedAt: 11, divergedBy: 3}), nodeapi.CodeDiverged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			setView(tc.v)
			for _, req := range []*http.Request{
				httptest.NewRequest(http.MethodPost, nodeapi.PathTx, strings.NewReader(`{"tx":"00"}`)),
				httptest.NewRequest(http.MethodGet, nodeapi.PathTx+"/00", nil),
				httptest.NewRequest(http.MethodGet, nodeapi.PathAccounts+"/00", nil),
			} {
				w := httptest.NewRecorder()
				mux.ServeHTTP(w, req)
				assertAPIError(t, w.Result(), http.StatusServiceUnavailable, tc.code, tc.v.Reason)
				if got := w.Result().Header.Get("Retry-After"); got != "2" {
					t.Errorf("%s %s: Retry-After %q", req.Method, req.URL.Path, got)
				}
			}
			w := httptest.NewRecorder()
			mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, nodeapi.PathHead, nil))
			if w.Code != http.StatusOK {
				t.Fatalf("head while %s: %d %s", tc.name, w.Code, w.Body)
			}
		})
	}
}

func assertAPIError(t *testing.T, resp *http.Response, status int, code, message string) {
	t.Helper()
	defer resp.Body.Close()
	var e nodeapi.Error
	if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
		t.Fatalf("%d: body: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != status || e.Code != code {
		t.Fatalf("answer %d %q (%s), want %d %q", resp.StatusCode, e.Code, e.Message, status, code)
	}
	if message != "" && e.Message != message {
		t.Fatalf("message %q, want %q", e.Message, message)
	}
}
