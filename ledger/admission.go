package ledger

import "errors"

// PrecheckPayment checks what a payment's admission can check without
// state: that tx is a payment for chainID, within the size limits, signed
// by its sender, with a payload that decodes to a non-zero amount. It
// returns the payment, or the rejection's code and reason. What depends on
// state (the nonce, the funds) is the leader's mempool's to check, and
// every block's application checks both again.
func PrecheckPayment(chainID string, t *Tx) (Payment, Code, string) {
	var p Payment
	switch {
	case t == nil:
		return p, CodeMalformed, "missing tx"
	case t.Kind != TxPayment:
		return p, CodeMalformed, "not a payment: " + t.Kind.String()
	case t.ChainID != chainID:
		return p, CodeWrongChain, "wrong chain id " + quote(t.ChainID) + ", this is " + quote(chainID)
	}
	if err := t.checkLimits(); err != nil {
		return p, CodeMalformed, "oversize: " + err.Error()
	}
	p, err := DecodePayment(t.Payload)
	if errors.Is(err, ErrZeroAmount) {
		return p, CodeMalformed, "zero amount"
	}
	if err != nil {
		return p, CodeMalformed, "bad payload: " + err.Error()
	}
	if t.VerifySignature() != nil {
		return p, CodeBadSignature, "bad signature"
	}
	return p, "", ""
}

// PrecheckPaymentInto is PrecheckPayment that records a payment whose
// signature verified in verified (see VerifiedSigs).
func PrecheckPaymentInto(chainID string, t *Tx, verified *VerifiedSigs) (Payment, Code, string) {
	p, code, reason := PrecheckPayment(chainID, t)
	if code == "" {
		verified.Add(t.ID())
	}
	return p, code, reason
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + s + `"`
}
