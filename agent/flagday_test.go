package agent

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/teeup/teeup/agent/decide"
	"github.com/teeup/teeup/layout"
)

// TestFlagDayJournal: the driver's state survives a restart; a corrupt
// journal is refused rather than guessed.
func TestFlagDayJournal(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: Config{ServeTimeout: Duration(time.Minute)}, dir: layout.Agent(dir)}
	f, err := a.newFlagDay()
	if err != nil {
		t.Fatal(err)
	}
	if f.cfg.ReadyTimeout != 3*time.Minute || f.cfg.LivePeriod != 2*time.Minute || f.cfg.ServeTimeout != time.Minute {
		t.Fatalf("defaults %+v", f.cfg)
	}
	want := decide.State{Version: "2.0.0", ActivationHeight: 40, Stage: decide.StageProving, ReadinessSigned: true, TestTxs: []string{"aa"}}
	if err := f.save(want); err != nil {
		t.Fatal(err)
	}
	again, err := a.newFlagDay()
	if err != nil {
		t.Fatal(err)
	}
	if got := again.get(); got.Version != want.Version || got.Stage != want.Stage || !got.ReadinessSigned || len(got.TestTxs) != 1 {
		t.Fatalf("restored %+v", got)
	}
	if err := os.WriteFile(a.dir.FlagDayJournal(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := a.newFlagDay(); !errors.Is(err, ErrCorruptJournal) {
		t.Fatalf("corrupt journal: %v", err)
	}
}
