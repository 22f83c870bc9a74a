//go:build ego

package boot_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/teeup/teeup/tee/boot"
)

// TestOpenOutsideEnclave runs EGo's real calls: this test process is not an
// SGX enclave, so Open must refuse, whatever the options say.
func TestOpenOutsideEnclave(t *testing.T) {
	for _, debug := range []bool{false, true} {
		var w bytes.Buffer
		p, err := boot.Open(boot.Options{Program: "teeup-test", Debug: debug, PlatformDir: t.TempDir(), Warnings: &w})
		if err == nil {
			t.Fatalf("Open succeeded outside an enclave (debug=%t): %+v", debug, p.Enclave.Identity())
		}
		if p != nil {
			t.Fatal("refused Open returned a platform")
		}
		for _, want := range []string{"teeup-test: ", "not running inside an SGX enclave", "all-zero key"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
	}
}
