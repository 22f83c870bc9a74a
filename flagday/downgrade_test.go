package flagday

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/keyfile"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/nodeapi"
	"github.com/teeup/teeup/remoteadmin"
)

// fakeChainHost serves a node admin API (status and governance) and an
// agent API stub on unix sockets in dir, as host 1.
func fakeChainHost(t *testing.T, dir string, g *nodeapi.Governance) Host {
	t.Helper()
	serve := func(name string, h http.Handler) string {
		sock := filepath.Join(dir, name)
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: remoteadmin.CheckNodeID(1, h), ReadHeaderTimeout: time.Second}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return sock
	}
	reply := func(v any) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(v)
		}
	}
	node := http.NewServeMux()
	node.HandleFunc("GET "+nodeapi.PathStatus, reply(nodeapi.Status{NodeID: 1, Leader: 1, Version: "2.0.0"}))
	node.HandleFunc("GET "+nodeapi.PathReleases, reply(g))
	return Host{ID: 1, AdminSocket: serve("n1.sock", node), AgentSocket: serve("a1.sock", reply(map[string]any{"node_id": 1}))}
}

// TestPreflightNamesTheDowngrade: a flag day to a release that is not
// newer than the release the chain runs stops at the preflight with
// ErrDowngrade and a message saying how to allow it, unless an approved
// rollback allows exactly that release; the plan names the blocker.
func TestPreflightNamesTheDowngrade(t *testing.T) {
	rollback := []nodeapi.RollbackInfo{{From: "2.0.0", To: "1.5.0", Height: 9}}
	cases := []struct {
		name      string
		running   string
		rollbacks []nodeapi.RollbackInfo
		version   string
		downgrade bool
	}{
		{"the running release again", "2.0.0", nil, "2.0.0", true},
		{"an older release", "2.0.0", nil, "1.5.0", true},
		{"a pre-release of the running release", "2.0.0", nil, "2.0.0-rc.1", true},
		{"older, with an approved rollback to it", "2.0.0", rollback, "1.5.0", false},
		{"older, with a rollback to another release", "2.0.0", rollback, "1.4.0", true},
		{"newer", "2.0.0", nil, "2.1.0", false},
		{"no running release on chain", "", nil, "0.0.1", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			key := filepath.Join(dir, "op.key")
			if _, err := keyfile.Generate(key); err != nil {
				t.Fatal(err)
			}
			g := &nodeapi.Governance{ChainID: "c", Height: 20, Quorum: 2, RunningRelease: tc.running, Rollbacks: tc.rollbacks}
			top := Topology{ChainID: "c", OperatorKeys: []string{key, key}, Hosts: []Host{fakeChainHost(t, dir, g)}}
			opt := Options{Root: dir, Topology: top, Version: tc.version}
			c, err := newCoordinator(opt)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.j = &journal{dir: layout.FlagDay(dir), rec: Record{Version: tc.version}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err = c.preflight(ctx)
			if got := errors.Is(err, ErrDowngrade); got != tc.downgrade {
				t.Fatalf("preflight: %v; want a downgrade refusal: %v", err, tc.downgrade)
			}
			if tc.downgrade && !strings.Contains(err.Error(), "teeup release approve-rollback --from "+tc.running+" --to "+tc.version) {
				t.Errorf("the refusal does not say how to allow it: %v", err)
			}
			if err == nil {
				t.Fatal("preflight passed without the release on chain")
			}
			p, err := Plan(ctx, opt)
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if (p.Blocker != "") != tc.downgrade || p.Running != tc.running {
				t.Fatalf("plan blocker %q, running %q", p.Blocker, p.Running)
			}
			var b bytes.Buffer
			PrintPlan(&b, p)
			if strings.Contains(b.String(), "BLOCKED: ") != tc.downgrade {
				t.Fatalf("printed plan:\n%s", b.String())
			}
		})
	}
}
