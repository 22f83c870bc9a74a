package release

import (
	"strings"
	"testing"
)

func TestCompareVersionsOrder(t *testing.T) {
	// Ascending order, from semver.org rule 11 and numeric-vs-text cases.
	ordered := []string{
		"0.0.0",
		"0.0.1",
		"0.1.0",
		"0.9.0",
		"0.10.0",
		"1.0.0-0",
		"1.0.0-1",
		"1.0.0-2",
		"1.0.0-10",
		"1.0.0-alpha",
		"1.0.0-alpha.1",
		"1.0.0-alpha.beta",
		"1.0.0-beta",
		"1.0.0-beta.2",
		"1.0.0-beta.11",
		"1.0.0-rc.1",
		"1.0.0",
		"1.0.1",
		"1.2.4",
		"1.2.30",
		"2.0.0",
		"10.0.0",
		"99999999999999999999999.0.0",
		"100000000000000000000000.0.0",
	}
	for i, a := range ordered {
		for j, b := range ordered {
			want := 0
			switch {
			case i < j:
				want = -1
			case i > j:
				want = 1
			}
			got, err := CompareVersions(a, b)
			if err != nil {
				t.Fatalf("CompareVersions(%q, %q): %v", a, b, err)
			}
			if got != want {
				t.Errorf("CompareVersions(%q, %q) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestVersionRejects(t *testing.T) {
	cases := []struct {
		version, want string
	}{
		{"", "empty"},
		{"1", "want MAJOR.MINOR.PATCH"},
		{"1.2", "want MAJOR.MINOR.PATCH"},
		{"1.2.3.4", "want MAJOR.MINOR.PATCH"},
		{"1..3", "minor version: empty number"},
		{"v1.2.3", "leading v"},
		{"V1.2.3", "leading v"},
		{"01.2.3", "major version: \"01\" has a leading zero"},
		{"1.02.3", "minor version: \"02\" has a leading zero"},
		{"1.2.03", "patch version: \"03\" has a leading zero"},
		{"1.2.3+build.5", "build metadata"},
		{"1.2.3-", "pre-release: empty identifier"},
		{"1.2.3-rc..1", "pre-release: empty identifier"},
		{"1.2.3-rc.01", "leading zero"},
		{"1.2.3-rc_1", "want [0-9A-Za-z-]"},
		{"1.2.3-ü", "want [0-9A-Za-z-]"},
		{"a.b.c", "not a decimal number"},
		{"1.2.-3", "patch version: empty number"},
		{" 1.2.3", "not a decimal number"},
		{"1.2.3 ", "not a decimal number"},
		{"-1.2.3", "want MAJOR.MINOR.PATCH"},
		{"1.2.3-" + strings.Repeat("a", 64), "at most 64"},
	}
	for _, tc := range cases {
		t.Run(tc.version, func(t *testing.T) {
			err := ValidateVersion(tc.version)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ValidateVersion(%q) = %v, want error containing %q", tc.version, err, tc.want)
			}
			if _, err := CompareVersions(tc.version, "1.0.0"); err == nil {
				t.Errorf("CompareVersions(%q, 1.0.0) accepted it", tc.version)
			}
			if _, err := CompareVersions("1.0.0", tc.version); err == nil {
				t.Errorf("CompareVersions(1.0.0, %q) accepted it", tc.version)
			}
		})
	}
}

func FuzzCompareVersions(f *testing.F) {
	f.Add("1.0.0", "1.0.0-rc.1")
	f.Add("1.0.0-alpha.1", "1.0.0-alpha.beta")
	f.Add("10.2.3", "9.99.99")
	f.Fuzz(func(t *testing.T, a, b string) {
		ab, errA := CompareVersions(a, b)
		ba, errB := CompareVersions(b, a)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("CompareVersions(%q, %q) error %v but reversed %v", a, b, errA, errB)
		}
		if errA != nil {
			return
		}
		if ab != -ba {
			t.Fatalf("CompareVersions(%q, %q) = %d but reversed %d", a, b, ab, ba)
		}
		if (ab == 0) != (a == b) {
			t.Fatalf("CompareVersions(%q, %q) = %d: equal precedence must mean equal strings", a, b, ab)
		}
	})
}
