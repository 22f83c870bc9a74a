package loadgen

import (
	"context"
	"errors"
	"strings"
	"unicode"

	"github.com/teeup/teeup/nodeapi"
)

// What a worker does after a failed submission attempt.
type verdict int

const (
	// retrySame resubmits the same signed transaction: the node may or may
	// not have admitted it, and the ledger deduplicates by id.
	retrySame verdict = iota
	// rejected is a deterministic refusal: this transaction will not be
	// committed by resubmitting it.
	rejected
)

// judge classifies a submission error: what to do, and the key it is
// counted under in Result.Errors.
func judge(err error) (verdict, string) {
	var apiErr *nodeapi.Error
	switch {
	case errors.As(err, &apiErr):
		key := apiErr.Code + ": " + normalize(strings.TrimPrefix(apiErr.Message, "rejected: "))
		switch apiErr.Code {
		case nodeapi.CodeRejected, nodeapi.CodeBadRequest, nodeapi.CodeTooLarge:
			return rejected, key
		case nodeapi.CodeClosedForUpgrade, nodeapi.CodeRateLimited, nodeapi.CodePoolFull, nodeapi.CodeTooManyPending:
			return retrySame, apiErr.Code
		}
		return retrySame, key
	case errors.Is(err, errBadReceipt):
		return retrySame, normalize(err.Error())
	case errors.Is(err, context.DeadlineExceeded):
		return retrySame, "attempt timed out"
	default:
		return retrySame, "transport: " + normalize(err.Error())
	}
}

// maxKeyLen bounds an error key, in runes.
const maxKeyLen = 120

// normalize turns an error message into a stable key: every word holding a
// digit (heights, nonces, addresses, ports, ids) becomes "#", white space is
// collapsed and the result is bounded, so that Result.Errors stays small
// however long a run lasts and whatever a node answers.
func normalize(msg string) string {
	words := strings.Fields(msg)
	for i, w := range words {
		if !strings.ContainsFunc(w, unicode.IsDigit) {
			continue
		}
		core := strings.TrimRight(w, `"':,;)]}`)
		words[i] = "#" + w[len(core):]
	}
	s := strings.Join(words, " ")
	if r := []rune(s); len(r) > maxKeyLen {
		s = string(r[:maxKeyLen]) + "…"
	}
	return s
}

// maxErrorKeys bounds the number of distinct keys in Result.Errors; later
// kinds are counted under otherErrors.
const (
	maxErrorKeys = 32
	otherErrors  = "other errors"
)

// countError adds one to key in m, folding new keys into otherErrors once
// m holds maxErrorKeys kinds.
func countError(m map[string]int, key string) {
	if _, ok := m[key]; !ok && len(m) >= maxErrorKeys {
		key = otherErrors
	}
	m[key]++
}
