package nodeapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// scriptedNode answers Submit with submitErr and TxStatus with the next
// of statuses (the last one repeats).
type scriptedNode struct {
	submitErr error
	mu        sync.Mutex
	statuses  []statusAnswer
	lookups   int
}

type statusAnswer struct {
	st  *TxStatus
	err error
}

func (n *scriptedNode) Submit(context.Context, []byte) (*Receipt, error) {
	if n.submitErr != nil {
		return nil, n.submitErr
	}
	return &Receipt{TxID: "t1", Status: TxCommitted, Height: 7}, nil
}

func (n *scriptedNode) TxStatus(context.Context, string) (*TxStatus, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.lookups++
	a := n.statuses[min(n.lookups, len(n.statuses))-1]
	return a.st, a.err
}

func TestSubmitAndConfirm(t *testing.T) {
	timeout := &Error{Code: CodeTimeout, Message: "not committed in time", TxID: "t1"}
	notFound := statusAnswer{err: &Error{Code: CodeNotFound, Message: "unknown transaction"}}
	pending := statusAnswer{st: &TxStatus{TxID: "t1", Status: TxPending}}
	committed := statusAnswer{st: &TxStatus{TxID: "t1", Status: TxCommitted, Height: 9, Code: "ok"}}
	noEffect := statusAnswer{st: &TxStatus{TxID: "t1", Status: TxCommitted, Height: 9, Code: "no_effect", Reason: "no effect: duplicate vote"}}
	rejected := statusAnswer{st: &TxStatus{TxID: "t1", Status: TxRejected, Code: "bad_nonce", Reason: "bad nonce"}}
	tests := []struct {
		name        string
		submitErr   error
		statuses    []statusAnswer
		wantHeight  uint64 // of the receipt; 0: an error
		wantRecCode string // of the receipt
		wantCode    string // of the error, if an *Error
		wantTxCode  string // of the error's ledger code
		wantErr     error  // a sentinel the error matches
		wantLookups bool
	}{
		{name: "committed at once", wantHeight: 7},
		{name: "timeout, then committed", submitErr: timeout, statuses: []statusAnswer{pending, pending, committed}, wantHeight: 9, wantRecCode: "ok", wantLookups: true},
		{name: "timeout, then committed without effect", submitErr: timeout, statuses: []statusAnswer{pending, noEffect}, wantHeight: 9, wantRecCode: "no_effect", wantLookups: true},
		{name: "connection broken, then committed", submitErr: errors.New("admin socket: EOF"), statuses: []statusAnswer{notFound, committed}, wantHeight: 9, wantRecCode: "ok", wantLookups: true},
		{name: "timeout, then rejected", submitErr: timeout, statuses: []statusAnswer{rejected}, wantCode: CodeRejected, wantTxCode: "bad_nonce", wantLookups: true},
		{name: "timeout, never committed", submitErr: timeout, statuses: []statusAnswer{pending}, wantErr: ErrNotCommitted, wantLookups: true},
		{name: "timeout, unknown", submitErr: timeout, statuses: []statusAnswer{notFound}, wantErr: ErrNotCommitted, wantLookups: true},
		{name: "rejected at admission", submitErr: &Error{Code: CodeRejected, Message: "rejected: bad nonce", TxCode: "bad_nonce"}, wantCode: CodeRejected, wantTxCode: "bad_nonce"},
		{name: "closed for upgrade", submitErr: &Error{Code: CodeClosedForUpgrade, Message: "closed"}, wantCode: CodeClosedForUpgrade},
		{name: "malformed", submitErr: &Error{Code: CodeBadRequest, Message: "bad"}, wantCode: CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &scriptedNode{submitErr: tt.submitErr, statuses: tt.statuses}
			rec, err := SubmitAndConfirm(context.Background(), n, []byte("tx"), "t1", 600*time.Millisecond)
			switch {
			case tt.wantHeight != 0:
				if err != nil || rec.Height != tt.wantHeight || rec.Status != TxCommitted || rec.TxID != "t1" || rec.Code != tt.wantRecCode {
					t.Fatalf("receipt %+v, %v; want committed at %d with code %q", rec, err, tt.wantHeight, tt.wantRecCode)
				}
			case tt.wantCode != "":
				if !IsCode(err, tt.wantCode) || rec != nil || TxCode(err) != tt.wantTxCode {
					t.Fatalf("%+v, %v (tx code %q); want an error with code %s, tx code %q", rec, err, TxCode(err), tt.wantCode, tt.wantTxCode)
				}
			default:
				if !errors.Is(err, tt.wantErr) || rec != nil {
					t.Fatalf("%+v, %v; want %v", rec, err, tt.wantErr)
				}
			}
			if (n.lookups > 0) != tt.wantLookups {
				t.Fatalf("%d status look-ups", n.lookups)
			}
		})
	}
}

// The caller's cancellation ends the look-up at once.
func TestSubmitAndConfirmCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n := &scriptedNode{submitErr: context.Canceled, statuses: []statusAnswer{{st: &TxStatus{Status: TxPending}}}}
	if _, err := SubmitAndConfirm(ctx, n, nil, "t1", time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
