package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/teeup/teeup/devnet"
)

// savedDevnet writes a devnet description of two hosts on loopback (no
// process runs) and returns its directory.
func savedDevnet(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	n := &devnet.Network{Dir: dir, ChainID: "test"}
	for id := uint64(1); id <= 2; id++ {
		hd := filepath.Join(dir, "hosts", "node-"+string(rune('0'+id)))
		h := devnet.Host{ID: id, Name: filepath.Base(hd), Dir: hd, DataDir: filepath.Join(hd, "data"), AgentDir: filepath.Join(hd, "agent"),
			PlatformDir: filepath.Join(hd, "platform"), LogDir: filepath.Join(hd, "logs")}
		for _, d := range []string{h.DataDir, h.AgentDir, h.PlatformDir} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		n.Hosts = append(n.Hosts, h)
	}
	if err := n.Save(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDevnetHostCommandErrors: the host and link commands name what is
// wrong: a host that does not exist, an argument that is not an id, a
// partition of a devnet that is not isolated, a directory without a devnet.
func TestDevnetHostCommandErrors(t *testing.T) {
	dir := savedDevnet(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"devnet", "host", "stop", "9", "--dir", dir}, "has no node 9"},
		{[]string{"devnet", "host", "wipe", "two", "--dir", dir}, "want a node id"},
		{[]string{"devnet", "host", "start", "--dir", dir}, "accepts 1 arg"},
		{[]string{"devnet", "partition", "1", "--dir", dir}, "not isolated"},
		{[]string{"devnet", "heal", "2", "--dir", dir}, "not isolated"},
		{[]string{"devnet", "host", "stop", "1", "--dir", t.TempDir()}, "is not a devnet"},
		{[]string{"devnet", "up", "--subnet", "10.9.0.0/24", "--dir", t.TempDir()}, "--subnet needs --isolate"},
		{[]string{"devnet", "up", "--isolate", "--subnet", "10.9.0.0", "--dir", t.TempDir()}, "--subnet"},
		{[]string{"devnet", "up", "--coordinated", "--coordinator-free", "--dir", t.TempDir()}, "contradict"},
		// The deprecated flag still parses: the error is the next one.
		{[]string{"devnet", "up", "--coordinator-free", "--subnet", "10.9.0.0/24", "--dir", t.TempDir()}, "--subnet needs --isolate"},
	} {
		_, errOut, code := run(t, tc.args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("teeup %s: exit %d, stderr %q; want an error naming %q", strings.Join(tc.args, " "), code, errOut, tc.want)
		}
	}
}

// TestDevnetUpFlagDayFlags: coordinator-free agents are the default;
// 'devnet up --help' offers --coordinated and no longer lists the
// deprecated --coordinator-free, which is still accepted.
func TestDevnetUpFlagDayFlags(t *testing.T) {
	out, _, code := run(t, "devnet", "up", "--help")
	if code != 0 || !strings.Contains(out, "--coordinated") || strings.Contains(out, "--coordinator-free") {
		t.Fatalf("devnet up --help (exit %d):\n%s", code, out)
	}
	up, _, err := NewRoot().Find([]string{"devnet", "up"})
	if err != nil {
		t.Fatal(err)
	}
	f := up.Flags().Lookup("coordinator-free")
	if f == nil || f.Deprecated == "" || !f.Hidden {
		t.Fatalf("--coordinator-free %+v: want accepted, deprecated and hidden", f)
	}
}

// TestDevnetHostStopAndWipeCommands: on a host with nothing running,
// 'host stop' says so and 'host wipe --json' empties the data directory and
// reports what it deleted and kept.
func TestDevnetHostStopAndWipeCommands(t *testing.T) {
	dir := savedDevnet(t)
	out, errOut, code := run(t, "devnet", "host", "stop", "2", "--dir", dir)
	if code != 0 || !strings.Contains(out, "host 2 stopped: nothing was running") {
		t.Fatalf("host stop: exit %d, %q %q", code, out, errOut)
	}
	data := filepath.Join(dir, "hosts", "node-2", "data")
	if err := os.MkdirAll(filepath.Join(data, "keys"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "keys", "x.sealed"), []byte("sealed"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = run(t, "devnet", "host", "wipe", "2", "--dir", dir, "--json")
	if code != 0 {
		t.Fatalf("host wipe: exit %d, %q", code, errOut)
	}
	var w devnet.Wiped
	if err := json.Unmarshal([]byte(out), &w); err != nil {
		t.Fatalf("host wipe --json: %v\n%s", err, out)
	}
	if len(w.Deleted) != 1 || filepath.Base(w.Deleted[0].Path) != "keys" || w.Deleted[0].Bytes != 6 {
		t.Fatalf("deleted %+v", w.Deleted)
	}
	if entries, err := os.ReadDir(data); err != nil || len(entries) != 0 {
		t.Fatalf("data dir after wipe: %v, %v", entries, err)
	}
	out, _, code = run(t, "devnet", "host", "wipe", "2", "--dir", dir)
	if code != 0 || !strings.Contains(out, "was already empty") || !strings.Contains(out, "kept") {
		t.Fatalf("second wipe: exit %d\n%s", code, out)
	}
}
