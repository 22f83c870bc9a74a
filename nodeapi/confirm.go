package nodeapi

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrNotCommitted is wrapped by SubmitAndConfirm's error when a
// transaction whose submission ended without an answer is neither
// committed nor rejected by the end of the wait.
var ErrNotCommitted = errors.New("transaction not committed")

// ErrNoEffect is wrapped by the errors of callers (the CLI's and flag
// day's governance votes) that report a transaction committed with the
// ledger's result code no_effect: its nonce is spent, but it lost a race
// with another transaction and changed nothing.
var ErrNoEffect = errors.New("committed without effect")

// Submitter is a node that takes transactions and answers for their status:
// the client API (Client) or the admin API (AdminClient).
type Submitter interface {
	Submit(ctx context.Context, tx []byte) (*Receipt, error)
	TxStatus(ctx context.Context, id string) (*TxStatus, error)
}

// confirmPoll is how often SubmitAndConfirm asks for a transaction's status.
const confirmPoll = 250 * time.Millisecond

// SubmitAndConfirm submits the encoded transaction tx, whose id is id, and
// returns its receipt once it is committed. When the submission ends
// without the node's verdict — the wait for its block timed out
// (CodeTimeout), the node was unavailable, the connection broke — the
// transaction may still be, or have been, committed: SubmitAndConfirm then
// looks it up (GET /v1/tx/{id}) for up to wait and reports what happened.
// A committed transaction returns its receipt (with the status's Code); a
// rejected one an *Error with CodeRejected and the ledger's TxCode; one
// still pending or unknown at the end an error wrapping ErrNotCommitted. A refusal by the node (rejected, malformed,
// closed for upgrade) is returned as it is: nothing was admitted.
func SubmitAndConfirm(ctx context.Context, n Submitter, tx []byte, id string, wait time.Duration) (*Receipt, error) {
	rec, err := n.Submit(ctx, tx)
	if err == nil {
		return rec, nil
	}
	if IsCode(err, CodeRejected) || IsCode(err, CodeBadRequest) || IsCode(err, CodeClosedForUpgrade) {
		return nil, err
	}
	submitErr := err
	if errors.Is(ctx.Err(), context.Canceled) {
		return nil, submitErr // the caller gave up
	}
	// A deadline of ctx that ended the submission does not end the
	// look-up; the caller's cancellation does.
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	defer stop()
	last := "no answer"
	for {
		st, err := n.TxStatus(lctx, id)
		switch {
		case err == nil && st.Status == TxCommitted:
			return &Receipt{TxID: id, Status: TxCommitted, Height: st.Height, Code: st.Code}, nil
		case err == nil && st.Status == TxRejected:
			return nil, &Error{Code: CodeRejected, Message: "rejected: " + st.Reason, TxID: id, TxCode: st.Code}
		case err == nil:
			last = st.Status
		case IsCode(err, CodeNotFound):
			last = "unknown to the node"
		default:
			last = err.Error()
		}
		select {
		case <-lctx.Done():
			return nil, fmt.Errorf("tx %s: %w (the submission ended with: %v; its status after %s: %s)", id, ErrNotCommitted, submitErr, wait, last)
		case <-time.After(confirmPoll):
		}
	}
}
