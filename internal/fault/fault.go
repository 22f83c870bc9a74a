// Package fault injects failures at named points of teeup's programs, for
// crash and failure tests. Programs link it only in a build with the
// "faults" tag (their default builds have no-op hooks), and faults are
// enabled only through the TEEUP_FAULTS environment variable (a
// comma-separated list of point names, each optionally "name=value").
//
// A "crash" fault ends the process at once with exit status 137, as kill -9
// would, without running deferred functions or flushing anything.
package fault

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/teeup/teeup/internal/buildinfo"
)

// EnvVar names the environment variable holding the enabled faults.
const EnvVar = buildinfo.FaultsEnvVar

// OnceDirEnvVar names a directory that makes every fault one-shot across
// processes: when a point fires it leaves a marker file there, and a point
// with a marker never fires again. Crash tests use it so that a restarted
// process (which inherits the environment) runs on.
const OnceDirEnvVar = "TEEUP_FAULTS_ONCE_DIR"

// Set is the set of enabled fault points.
type Set struct {
	points  map[string]string
	onceDir string
}

// Parse parses a fault specification such as "crash:agent.after-seal,migrate:fail".
func Parse(spec string) (Set, error) {
	s := Set{points: map[string]string{}}
	for _, p := range strings.Split(spec, ",") {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		name, value, _ := strings.Cut(p, "=")
		if name == "" {
			return Set{}, fmt.Errorf("fault spec %q: empty point name", spec)
		}
		s.points[name] = value
	}
	return s, nil
}

// FromEnv parses TEEUP_FAULTS and TEEUP_FAULTS_ONCE_DIR.
func FromEnv() (Set, error) {
	s, err := Parse(os.Getenv(EnvVar))
	s.onceDir = os.Getenv(OnceDirEnvVar)
	return s, err
}

// Has reports whether the named point is enabled.
func (s Set) Has(name string) bool {
	_, ok := s.points[name]
	return ok
}

// fire reports whether point should fire now, consuming it in one-shot mode.
func (s Set) fire(point string) bool {
	if !s.Has(point) {
		return false
	}
	if s.onceDir == "" {
		return true
	}
	marker := filepath.Join(s.onceDir, strings.ReplaceAll(point, "/", "_"))
	f, err := os.OpenFile(marker, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return false // fired before (or the directory is unusable: do not fire)
	}
	f.Sync()
	f.Close()
	return true
}

// Value returns the value given to the point, if any.
func (s Set) Value(name string) string { return s.points[name] }

// Empty reports whether no fault is enabled.
func (s Set) Empty() bool { return len(s.points) == 0 }

// CrashPoint ends the process like kill -9 when "crash:<name>" is enabled.
func (s Set) CrashPoint(name string) {
	if s.fire("crash:" + name) {
		fmt.Fprintf(os.Stderr, "FAULT INJECTION: crashing at %s\n", name)
		os.Exit(137)
	}
}

// Error returns an error when "fail:<name>" is enabled.
func (s Set) Error(name string) error {
	if s.fire("fail:" + name) {
		return fmt.Errorf("injected failure at %s", name)
	}
	return nil
}
