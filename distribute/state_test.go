package distribute

import (
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	for _, n := range []uint64{0, 1, 12345, math.MaxUint64} {
		if err := SaveState(path, State{NextBlock: n}); err != nil {
			t.Fatalf("SaveState(%d): %v", n, err)
		}
		got, err := LoadState(path)
		if err != nil {
			t.Fatalf("LoadState after saving %d: %v", n, err)
		}
		if got.NextBlock != n {
			t.Fatalf("LoadState = %d, want %d", got.NextBlock, n)
		}
		if _, err := os.Stat(stateTempPath(path)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("temporary file left after a successful save: %v", err)
		}
	}
}

func TestLoadStateMissing(t *testing.T) {
	_, err := LoadState(filepath.Join(t.TempDir(), "absent.json"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadState(missing) error = %v, want os.ErrNotExist", err)
	}
	if errors.Is(err, ErrCorruptState) {
		t.Fatalf("missing file reported as corrupt: %v", err)
	}
}

func TestLoadStateRejects(t *testing.T) {
	for _, tc := range []struct {
		name, content string
	}{
		{"empty", ""},
		{"whitespace", " \n\t"},
		{"truncated", `{"next_block": 1`},
		{"truncated after colon", `{"next_block":`},
		{"not json", "next_block=3"},
		{"array", `[3]`},
		{"bare number", `3`},
		{"null", `null`},
		{"empty object", `{}`},
		{"null value", `{"next_block": null}`},
		{"string value", `{"next_block": "3"}`},
		{"negative", `{"next_block": -1}`},
		{"fraction", `{"next_block": 1.5}`},
		{"float notation", `{"next_block": 1.0}`},
		{"exponent", `{"next_block": 1e3}`},
		{"overflow", `{"next_block": 18446744073709551616}`},
		{"bool", `{"next_block": true}`},
		{"wrong case key", `{"Next_Block": 3}`},
		{"unknown field", `{"next_block": 3, "extra": 1}`},
		{"unknown field first", `{"extra": 1, "next_block": 3}`},
		{"duplicate field", `{"next_block": 3, "next_block": 4}`},
		{"trailing garbage", `{"next_block": 3}x`},
		{"two objects", `{"next_block": 3}{"next_block": 4}`},
		{"nested", `{"next_block": {"n": 3}}`},
		{"too large", `{"next_block": 3}` + strings.Repeat(" ", maxStateSize)},
		{"nul bytes", "\x00\x00\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "state.json")
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := LoadState(path)
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("LoadState(%q) = %+v, %v; want ErrCorruptState", tc.content, st, err)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			// Nothing lost: the corrupt file is left for the operator.
			raw, err := os.ReadFile(path)
			if err != nil || string(raw) != tc.content {
				t.Fatalf("state file changed by LoadState: %q, %v", raw, err)
			}
		})
	}
}

func TestLoadStateAccepts(t *testing.T) {
	for _, tc := range []struct {
		content string
		want    uint64
	}{
		{`{"next_block":0}`, 0},
		{`{"next_block": 7}` + "\n", 7},
		{" \n{ \"next_block\" : 42 }\n\n", 42},
		{`{"next_block": 18446744073709551615}`, math.MaxUint64},
	} {
		got, err := parseState([]byte(tc.content))
		if err != nil || got.NextBlock != tc.want {
			t.Errorf("parseState(%q) = %+v, %v; want %d", tc.content, got, err, tc.want)
		}
	}
}

func TestLoadStateUnreadable(t *testing.T) {
	// A directory where the state file should be: an I/O error, not corruption
	// and not "missing".
	path := t.TempDir()
	_, err := LoadState(path)
	if err == nil || errors.Is(err, os.ErrNotExist) {
		t.Fatalf("LoadState(directory) error = %v, want a read error", err)
	}
}

func TestSaveStateCrashLeavesOldFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	if err := SaveState(path, State{NextBlock: 5}); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	crash := errors.New("crash")
	err = saveState(path, State{NextBlock: 6}, func() error {
		// At this point the new content must be complete in the temporary
		// file and the state file untouched.
		tmp, err := LoadState(stateTempPath(path))
		if err != nil || tmp.NextBlock != 6 {
			t.Errorf("temporary file during save = %+v, %v; want 6", tmp, err)
		}
		return crash
	})
	if !errors.Is(err, crash) {
		t.Fatalf("saveState error = %v, want the crash", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("state file changed by an interrupted save: %q -> %q", before, after)
	}
	if _, err := os.Stat(stateTempPath(path)); err != nil {
		t.Fatalf("interrupted save should leave its temporary file (as a crash would): %v", err)
	}
	// The next save overwrites the stale temporary file and succeeds.
	if err := SaveState(path, State{NextBlock: 7}); err != nil {
		t.Fatalf("save after a crash: %v", err)
	}
	if st, err := LoadState(path); err != nil || st.NextBlock != 7 {
		t.Fatalf("LoadState = %+v, %v; want 7", st, err)
	}
}

func TestSaveStateRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		path string
	}{
		{"missing directory", filepath.Join(dir, "no", "such", "state.json")},
		{"path is a directory", dir},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := SaveState(tc.path, State{NextBlock: 1}); err == nil {
				t.Fatalf("SaveState(%s) succeeded", tc.path)
			}
		})
	}
}

func FuzzLoadState(f *testing.F) {
	for _, s := range []string{
		`{"next_block":0}`, `{"next_block": 18446744073709551615}`, `{"next_block":-1}`,
		`{}`, `null`, `{"next_block":1}{}`, `{"next_block":1.0}`, "", "\xff\xfe",
		`{"next_block":3,"x":1}`, `{"next_block":"3"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := parseState(raw)
		if err != nil {
			if !errors.Is(err, ErrCorruptState) {
				t.Fatalf("rejection not marked ErrCorruptState: %v", err)
			}
			return
		}
		// Accepted: must be valid JSON, one object with exactly the key
		// next_block holding a non-negative integer equal to the result.
		if !json.Valid(raw) {
			t.Fatalf("accepted invalid JSON %q", raw)
		}
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(raw, &obj); err != nil {
			t.Fatalf("accepted %q, which is not an object: %v", raw, err)
		}
		v, ok := obj["next_block"]
		if len(obj) != 1 || !ok {
			t.Fatalf("accepted %q with keys other than next_block", raw)
		}
		n, err := strconv.ParseUint(string(v), 10, 64)
		if err != nil || n != st.NextBlock {
			t.Fatalf("accepted %q as %d; value %s parses as %d, %v", raw, st.NextBlock, v, n, err)
		}
		// And it round-trips through SaveState's encoding.
		out, err := json.Marshal(st)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseState(out)
		if err != nil || again != st {
			t.Fatalf("re-encoding %+v: %s -> %+v, %v", st, out, again, err)
		}
	})
}
