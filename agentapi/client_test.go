package agentapi

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
)

// The agent's coded errors reach a client as values: errors.Is matches the
// sentinel of the code, and a refused rollback carries what it would lose.
func TestClientErrorsKeepTheirCode(t *testing.T) {
	dir, err := os.MkdirTemp("", "agentapi")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	loss := Loss{FromHeight: 11, ToHeight: 12, Transactions: 3}
	mux := http.NewServeMux()
	answer := func(status int, e Error) http.HandlerFunc {
		return func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_ = json.NewEncoder(w).Encode(e)
		}
	}
	lossErr := &LossError{Loss: loss, Version: "2.0.0"}
	mux.HandleFunc("POST "+PathRollback, answer(http.StatusConflict, Error{Message: lossErr.Error(), Code: CodeOf(lossErr), Loss: &loss}))
	mux.HandleFunc("POST "+PathUpgrade, answer(http.StatusConflict, Error{Message: "busy", Code: CodeOf(ErrUpgradeInProgress)}))
	mux.HandleFunc("POST "+PathFinalize, answer(http.StatusConflict, Error{Message: "not completed"}))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c := NewClient(sock)
	defer c.Close()

	_, err = c.Rollback(t.Context(), RollbackRequest{Reason: "regret"})
	var ae *Error
	if !errors.Is(err, ErrWouldLoseTransactions) || errors.Is(err, ErrUpgradeInProgress) || !errors.As(err, &ae) || ae.Loss == nil || *ae.Loss != loss {
		t.Fatalf("rollback: %v (%+v), want ErrWouldLoseTransactions with the loss", err, ae)
	}
	if _, err := c.Upgrade(t.Context(), UpgradeRequest{Version: "2.0.0"}); !errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("upgrade: %v, want ErrUpgradeInProgress", err)
	}
	_, err = c.Finalize(t.Context())
	if !errors.As(err, &ae) || ae.Code != "" || errors.Is(err, ErrWouldLoseTransactions) || errors.Is(err, ErrUpgradeInProgress) {
		t.Fatalf("finalize: %v, want an uncoded agent error", err)
	}
	if CodeOf(errors.New("other")) != "" || CodeOf(lossErr) != CodeWouldLoseTransactions {
		t.Fatal("CodeOf")
	}
}
