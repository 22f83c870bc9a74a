package agent

import (
	"errors"
	"testing"

	"github.com/teeup/teeup/release"
)

// TestCheckNotDowngrade: a handover goes only to a newer release approved
// after the running one, or to an older one an approved rollback record
// allows; a refusal wraps release.ErrDowngrade.
func TestCheckNotDowngrade(t *testing.T) {
	cur := &approvedRelease{Version: "1.1.0", ApprovedAt: 10}
	errRead := errors.New("node unreachable")
	for _, c := range []struct {
		name            string
		installed, to   string
		cur, tgt        *approvedRelease
		rollback        bool
		rollbackErr     error
		wantDowngrade   bool
		wantErr         error
		wantRollbackAsk bool
	}{
		{name: "newer, approved later", installed: "1.1.0", to: "1.2.0", cur: cur, tgt: &approvedRelease{Version: "1.2.0", ApprovedAt: 11}},
		{name: "newer, running release's approval not on chain", installed: "1.1.0", to: "1.2.0", tgt: &approvedRelease{Version: "1.2.0", ApprovedAt: 3}},
		{name: "older, no rollback record", installed: "1.1.0", to: "1.0.0", cur: cur, tgt: &approvedRelease{Version: "1.0.0", ApprovedAt: 12}, wantDowngrade: true, wantRollbackAsk: true},
		{name: "same version", installed: "1.1.0", to: "1.1.0", cur: cur, tgt: cur, wantDowngrade: true, wantRollbackAsk: true},
		{name: "newer but approved before the running one", installed: "1.1.0", to: "1.2.0", cur: cur, tgt: &approvedRelease{Version: "1.2.0", ApprovedAt: 9}, wantDowngrade: true, wantRollbackAsk: true},
		{name: "older, rollback record approved", installed: "1.1.0", to: "1.0.0", cur: cur, tgt: &approvedRelease{Version: "1.0.0", ApprovedAt: 12}, rollback: true, wantRollbackAsk: true},
		{name: "older, rollback records unreadable", installed: "1.1.0", to: "1.0.0", cur: cur, tgt: &approvedRelease{Version: "1.0.0"}, rollbackErr: errRead, wantErr: errRead, wantRollbackAsk: true},
	} {
		asked := false
		err := checkNotDowngrade(c.installed, c.to, c.cur, c.tgt, func() (bool, error) {
			asked = true
			return c.rollback, c.rollbackErr
		})
		if got := errors.Is(err, release.ErrDowngrade); got != c.wantDowngrade {
			t.Errorf("%s: err %v, ErrDowngrade %t, want %t", c.name, err, got, c.wantDowngrade)
		}
		if c.wantErr != nil && !errors.Is(err, c.wantErr) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.wantErr)
		}
		if !c.wantDowngrade && c.wantErr == nil && err != nil {
			t.Errorf("%s: refused: %v", c.name, err)
		}
		if asked != c.wantRollbackAsk {
			t.Errorf("%s: rollback records read %t, want %t", c.name, asked, c.wantRollbackAsk)
		}
	}
}
