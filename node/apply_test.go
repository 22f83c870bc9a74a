package node

import (
	"testing"

	"github.com/teeup/teeup/ledger"
)

// TestWaitersActOnResultCodes: a submitter learns its transaction's fate
// from the ledger's result code, never from the reason's text.
func TestWaitersActOnResultCodes(t *testing.T) {
	id := ledger.Hash{7}
	cases := []struct {
		name    string
		res     ledger.Result
		deliver bool
		want    txOutcome
	}{
		{name: "admitted", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Accepted: true, Code: ledger.CodeOK}},
		{name: "a re-proposal of a duplicate index", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Duplicate: true}},
		{name: "already pending", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Code: ledger.CodeAlreadyPending, Reason: "wording may change"}},
		{name: "already committed", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Code: ledger.CodeAlreadyCommitted, Height: 4, Reason: "x"},
			deliver: true, want: txOutcome{committed: true, height: 4}},
		{name: "rejected", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Code: ledger.CodeBadNonce, Reason: "bad nonce: got 3, want 1"},
			deliver: true, want: txOutcome{code: ledger.CodeBadNonce, reason: "bad nonce: got 3, want 1"}},
		{name: "downgrade", res: ledger.Result{Kind: ledger.CmdSubmitTx, TxID: id, Code: ledger.CodeDowngrade, Reason: "d"},
			deliver: true, want: txOutcome{code: ledger.CodeDowngrade, reason: "d"}},
		{name: "committed in a block", res: ledger.Result{Kind: ledger.CmdBlock, Accepted: true, Code: ledger.CodeOK, Height: 5, TxIDs: []ledger.Hash{id}},
			deliver: true, want: txOutcome{committed: true, height: 5}},
		{name: "rejected block", res: ledger.Result{Kind: ledger.CmdBlock, Code: ledger.CodeBadBlock, Height: 5, TxIDs: []ledger.Hash{id}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := newWaiters()
			ch := w.add(id)
			w.notify(tc.res)
			select {
			case o := <-ch:
				if !tc.deliver || o != tc.want {
					t.Fatalf("delivered %+v, want %+v (deliver %v)", o, tc.want, tc.deliver)
				}
			default:
				if tc.deliver {
					t.Fatalf("nothing delivered, want %+v", tc.want)
				}
			}
		})
	}
}
