package demo

import (
	"testing"

	"github.com/teeup/teeup/ledger"
)

// TestV2RunsTheNewestSchema: the demo's 2.0.0 (and so the flag-day e2e
// test) migrates to the newest schema this source has.
func TestV2RunsTheNewestSchema(t *testing.T) {
	if newest := ledger.NewestSchema(ledger.DefaultMigrations()); V2Schema != newest || V1Schema >= V2Schema {
		t.Fatalf("demo schemas %d -> %d, the newest is %d", V1Schema, V2Schema, newest)
	}
}
