package nodeapi

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
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
	if !IsCode(err, CodeClosedForUpgrade) {
		t.Fatalf("Submit = %v", err)
	}
	// A non-JSON error answer is an internal error carrying the body.
	if _, err := c.Head(ctx); !IsCode(err, CodeInternal) || !strings.Contains(err.Error(), "boom") {
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
