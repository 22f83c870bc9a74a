package loadgen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/teeup/teeup/nodeapi"
)

func TestJudge(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		verdict verdict
		key     string
	}{
		{"rejected", &nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: bad nonce: got 7, want 9"}, rejected, "rejected: bad nonce: got #, want #"},
		{"bad request", &nodeapi.Error{Code: nodeapi.CodeBadRequest, Message: "malformed transaction: tx: 3 trailing bytes"}, rejected, "bad_request: malformed transaction: tx: # trailing bytes"},
		{"closed for upgrade", &nodeapi.Error{Code: nodeapi.CodeClosedForUpgrade, Message: "closed for upgrade: retry later (v2 at 1200)"}, retrySame, "closed_for_upgrade"},
		{"rate limited", &nodeapi.Error{Code: nodeapi.CodeRateLimited, Message: "rate limited: more than 1000 requests per second (burst 2000) from 127.0.0.1; retry after 1s"}, retrySame, "rate_limited"},
		{"pool full", &nodeapi.Error{Code: nodeapi.CodePoolFull, Message: "pool full (pool full: 10000 payments wait)"}, retrySame, "pool_full"},
		{"too many pending", &nodeapi.Error{Code: nodeapi.CodeTooManyPending, Message: "too many pending payments from this account (64 wait)"}, retrySame, "too_many_pending"},
		{"too large", &nodeapi.Error{Code: nodeapi.CodeTooLarge, Message: "request body too large: at most 65536 bytes accepted"}, rejected, "too_large: request body too large: at most # bytes accepted"},
		{"node timeout", &nodeapi.Error{Code: nodeapi.CodeTimeout, Message: "not committed in time"}, retrySame, "timeout: not committed in time"},
		{"unavailable", &nodeapi.Error{Code: nodeapi.CodeUnavailable, Message: "no leader"}, retrySame, "unavailable: no leader"},
		{"wrapped api error", fmt.Errorf("submit: %w", &nodeapi.Error{Code: nodeapi.CodeRejected, Message: "rejected: zero amount"}), rejected, "rejected: zero amount"},
		{"attempt timeout", fmt.Errorf("node x: %w", context.DeadlineExceeded), retrySame, "attempt timed out"},
		{"transport", errors.New("node 127.0.0.1:4000: dial tcp 127.0.0.1:4000: connect: connection refused"), retrySame, "transport: node #: dial tcp #: connect: connection refused"},
		{"bad receipt", fmt.Errorf("%w: height 0", errBadReceipt), retrySame, "bad receipt: height #"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, key := judge(tt.err)
			if v != tt.verdict || key != tt.key {
				t.Errorf("judge = (%v, %q), want (%v, %q)", v, key, tt.verdict, tt.key)
			}
		})
	}
}

func TestCountErrorIsBounded(t *testing.T) {
	m := map[string]int{}
	for i := range 100 {
		countError(m, fmt.Sprintf("kind %c", 'A'+rune(i%60)))
	}
	if len(m) != maxErrorKeys+1 {
		t.Fatalf("%d keys, want %d plus %q", len(m), maxErrorKeys, otherErrors)
	}
	total := 0
	for _, v := range m {
		total += v
	}
	if total != 100 {
		t.Fatalf("counted %d errors, want 100", total)
	}
	if m["kind A"] != 2 {
		t.Errorf("a known key kept counting: %d, want 2", m["kind A"])
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{
		"", "rejected: bad nonce: got 7, want 9",
		`node 127.0.0.1:40001: Post "https://127.0.0.1:40001/v1/tx": read: connection reset by peer`,
		strings.Repeat("é9 ", 200), "\x00\xff\xfe", "tx 0a1b2c… (height 12)",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got := normalize(s)
		if strings.ContainsFunc(got, unicode.IsDigit) {
			t.Fatalf("normalize(%q) = %q keeps a digit", s, got)
		}
		if n := utf8.RuneCountInString(got); n > maxKeyLen+1 {
			t.Fatalf("normalize(%q) has %d runes, want at most %d", s, n, maxKeyLen+1)
		}
		if again := normalize(got); again != got && utf8.RuneCountInString(got) <= maxKeyLen {
			t.Fatalf("normalize is not idempotent: %q then %q", got, again)
		}
	})
}
