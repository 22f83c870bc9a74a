package consensus

import (
	"errors"
	"fmt"
	"testing"
)

type codedRefusal struct{}

func (codedRefusal) Error() string       { return "refused" }
func (codedRefusal) RefusalCode() string { return "removed" }

// TestRefusalCode: the transport's own refusal of a non-peer and an
// authorizer's coded refusal (also when wrapped) carry their codes; a
// plain error has none.
func TestRefusalCode(t *testing.T) {
	tr := &Transport{cfg: TransportConfig{ID: 1}, peers: map[uint64]*peer{}}
	err := tr.authorize(2, nil, PurposeRaft)
	if !errors.Is(err, ErrNotAuthorized) || RefusalCode(err) != CodeNotPeer {
		t.Fatalf("non-peer: %v, code %q", err, RefusalCode(err))
	}
	if got := RefusalCode(fmt.Errorf("dial: %w", codedRefusal{})); got != "removed" {
		t.Fatalf("wrapped coded refusal: code %q", got)
	}
	if got := RefusalCode(ErrNotAuthorized); got != "" {
		t.Fatalf("plain error: code %q", got)
	}
}
