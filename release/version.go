package release

import (
	"errors"
	"fmt"
	"strings"
)

// maxVersionLen bounds a version string.
const maxVersionLen = 64

// version is a parsed semantic version. The numeric parts are kept as their
// decimal text (without leading zeros), so arbitrarily large numbers compare
// correctly without overflow.
type version struct {
	core       [3]string // major, minor, patch
	preRelease []string  // dot-separated identifiers; nil for a release
}

// ValidateVersion checks that s is a semantic version (semver.org 2.0.0)
// "MAJOR.MINOR.PATCH" with an optional pre-release suffix ("2.0.0-rc.1").
//
// Build metadata ("+build.5") is refused: it does not take part in
// precedence, so two different release strings would compare equal and an
// upgrade could not be told from a reinstall. A leading "v" is refused too,
// so that equal versions are always equal strings.
func ValidateVersion(s string) error {
	_, err := parseVersion(s)
	return err
}

// ErrDowngrade is wrapped by every refusal of a release that is not newer
// than the one running (unless an approved rollback record allows it):
// the agent's before a handover, the flag-day preflight's.
var ErrDowngrade = errors.New("downgrade")

// CompareVersions compares two semantic versions by semver precedence and
// returns -1 if a < b, 0 if a == b and +1 if a > b. A pre-release is lower
// than its release: 1.0.0-rc.1 < 1.0.0. Either string being invalid is an
// error (see ValidateVersion).
func CompareVersions(a, b string) (int, error) {
	va, err := parseVersion(a)
	if err != nil {
		return 0, err
	}
	vb, err := parseVersion(b)
	if err != nil {
		return 0, err
	}
	for i := range va.core {
		if c := compareNumeric(va.core[i], vb.core[i]); c != 0 {
			return c, nil
		}
	}
	return comparePreRelease(va.preRelease, vb.preRelease), nil
}

func parseVersion(s string) (version, error) {
	var v version
	if s == "" {
		return v, errors.New("version is empty; want MAJOR.MINOR.PATCH")
	}
	if len(s) > maxVersionLen {
		return v, fmt.Errorf("version is %d bytes long, at most %d", len(s), maxVersionLen)
	}
	if strings.Contains(s, "+") {
		return v, fmt.Errorf("version %q: build metadata (+...) is not accepted; use a pre-release suffix or a new patch version", s)
	}
	if strings.HasPrefix(s, "v") || strings.HasPrefix(s, "V") {
		return v, fmt.Errorf("version %q: write it without the leading v", s)
	}
	core, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return v, fmt.Errorf("version %q: want MAJOR.MINOR.PATCH", s)
	}
	names := [3]string{"major", "minor", "patch"}
	for i, p := range parts {
		if err := checkNumeric(p); err != nil {
			return v, fmt.Errorf("version %q: %s version: %w", s, names[i], err)
		}
		v.core[i] = p
	}
	if hasPre {
		ids := strings.Split(pre, ".")
		for _, id := range ids {
			if err := checkPreReleaseID(id); err != nil {
				return v, fmt.Errorf("version %q: pre-release: %w", s, err)
			}
		}
		v.preRelease = ids
	}
	return v, nil
}

// checkNumeric accepts a non-negative decimal integer without leading zeros.
func checkNumeric(p string) error {
	if p == "" {
		return errors.New("empty number")
	}
	if !isDigits(p) {
		return fmt.Errorf("%q is not a decimal number", p)
	}
	if len(p) > 1 && p[0] == '0' {
		return fmt.Errorf("%q has a leading zero", p)
	}
	return nil
}

// checkPreReleaseID accepts a non-empty identifier of [0-9A-Za-z-]; a purely
// numeric one must not have a leading zero.
func checkPreReleaseID(id string) error {
	if id == "" {
		return errors.New("empty identifier")
	}
	for _, c := range []byte(id) {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
			return fmt.Errorf("identifier %q has character %q; want [0-9A-Za-z-]", id, c)
		}
	}
	if isDigits(id) && len(id) > 1 && id[0] == '0' {
		return fmt.Errorf("numeric identifier %q has a leading zero", id)
	}
	return nil
}

func isDigits(s string) bool {
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// compareNumeric compares decimal numbers without leading zeros.
func compareNumeric(a, b string) int {
	if len(a) != len(b) {
		if len(a) < len(b) {
			return -1
		}
		return 1
	}
	return strings.Compare(a, b)
}

// comparePreRelease applies semver rule 11: no pre-release ranks above any
// pre-release; identifiers compare pairwise, numeric ones numerically and
// below alphanumeric ones, which compare in ASCII order; a shorter list that
// is a prefix of a longer one ranks lower.
func comparePreRelease(a, b []string) int {
	switch {
	case a == nil && b == nil:
		return 0
	case a == nil:
		return 1
	case b == nil:
		return -1
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		na, nb := isDigits(a[i]), isDigits(b[i])
		var c int
		switch {
		case na && nb:
			c = compareNumeric(a[i], b[i])
		case na:
			c = -1
		case nb:
			c = 1
		default:
			c = strings.Compare(a[i], b[i])
		}
		if c != 0 {
			return c
		}
	}
	switch {
	case len(a) < len(b):
		return -1
	case len(a) > len(b):
		return 1
	}
	return 0
}
