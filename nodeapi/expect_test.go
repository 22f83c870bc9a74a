package nodeapi

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeup/teeup/remoteadmin"
)

// serveUnix serves h on a unix socket in a temporary directory.
func serveUnix(t *testing.T, h http.Handler) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "admin.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// TestAdminClientExpectNode: a client told which node it addresses is
// refused by a node of another id (before it acts), refuses an answer
// from another node, and works with the right one.
func TestAdminClientExpectNode(t *testing.T) {
	reached := 0
	status := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reached++
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"node_id": 2}`))
	})
	checked := serveUnix(t, remoteadmin.CheckNodeID(2, status))
	// A server that ignores the request's node id but names itself.
	liar := serveUnix(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(remoteadmin.HeaderNodeID, "5")
		status(w, r)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, tt := range []struct {
		name    string
		sock    string
		expect  uint64
		wantErr error
		reaches bool
	}{
		{"right node", checked, 2, nil, true},
		{"no expectation", checked, 0, nil, true},
		{"another node refuses the request", checked, 3, remoteadmin.ErrWrongNode, false},
		{"an answer from another node is refused", liar, 2, remoteadmin.ErrWrongNode, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := reached
			a := NewAdminClient(tt.sock).ExpectNode(tt.expect)
			defer a.Close()
			_, err := a.Status(ctx)
			if !errors.Is(err, tt.wantErr) || (tt.wantErr == nil && err != nil) {
				t.Fatalf("Status = %v, want %v", err, tt.wantErr)
			}
			if got := reached > before; got != tt.reaches {
				t.Fatalf("reached the API: %v, want %v", got, tt.reaches)
			}
		})
	}
}
