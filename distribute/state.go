package distribute

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/teeup/teeup/internal/fsutil"
)

// ErrCorruptState marks a state file that exists but cannot be trusted. The
// distributor refuses to run on it rather than guess a height: restore the
// file from a snapshot or remove it deliberately to reconcile from Config.Start.
var ErrCorruptState = errors.New("corrupt state file")

// maxStateSize bounds how much of a state file is read; a valid one is a few
// dozen bytes.
const maxStateSize = 4 << 10

// stateField is the JSON name of State.NextBlock.
const stateField = "next_block"

// State is the content of the distribution state file.
type State struct {
	// NextBlock is the height of the next block to publish: every block
	// below it is durable in the destination.
	NextBlock uint64 `json:"next_block"`
}

// LoadState reads the state file at path. A missing file returns an error
// that wraps os.ErrNotExist, so the caller chooses where to start; a file
// that is not exactly one JSON object with a next_block field returns an
// error wrapping ErrCorruptState, never a zero State.
func LoadState(path string) (State, error) {
	f, err := os.Open(path)
	if err != nil {
		return State{}, fmt.Errorf("load state %s: %w", path, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxStateSize+1))
	if err != nil {
		return State{}, fmt.Errorf("load state %s: %w", path, err)
	}
	s, err := parseState(raw)
	if err != nil {
		return State{}, fmt.Errorf("load state %s: %w", path, err)
	}
	return s, nil
}

// parseState decodes the state file's bytes strictly: exactly one JSON
// object holding exactly one field, next_block, whose value is an unsigned
// decimal integer, followed by nothing but white space.
func parseState(raw []byte) (State, error) {
	if len(raw) > maxStateSize {
		return State{}, fmt.Errorf("%w: larger than %d bytes", ErrCorruptState, maxStateSize)
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return State{}, fmt.Errorf("%w: empty", ErrCorruptState)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	next := func(what string) (json.Token, error) {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: reading %s: %w", ErrCorruptState, what, err)
		}
		return tok, nil
	}
	tok, err := next("object start")
	if err != nil {
		return State{}, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return State{}, fmt.Errorf("%w: want a JSON object, got %v", ErrCorruptState, tok)
	}
	if tok, err = next("field name"); err != nil {
		return State{}, err
	}
	if key, ok := tok.(string); !ok || key != stateField {
		return State{}, fmt.Errorf("%w: want field %q, got %v", ErrCorruptState, stateField, tok)
	}
	if tok, err = next(stateField); err != nil {
		return State{}, err
	}
	num, ok := tok.(json.Number)
	if !ok {
		return State{}, fmt.Errorf("%w: %s is %v, want an unsigned integer", ErrCorruptState, stateField, tok)
	}
	n, err := strconv.ParseUint(num.String(), 10, 64)
	if err != nil {
		return State{}, fmt.Errorf("%w: %s %s is not an unsigned 64-bit integer", ErrCorruptState, stateField, num)
	}
	if tok, err = next("object end"); err != nil {
		return State{}, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '}' {
		return State{}, fmt.Errorf("%w: unexpected %v after %s (only %s is allowed)", ErrCorruptState, tok, stateField, stateField)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return State{}, fmt.Errorf("%w: trailing data after the JSON object", ErrCorruptState)
	}
	return State{NextBlock: n}, nil
}

// SaveState atomically replaces the state file at path with s: it writes a
// temporary file beside it, syncs it, renames it over path and syncs the
// directory. A crash at any point leaves either the old or the new file.
func SaveState(path string, s State) error {
	return saveState(path, s, nil)
}

// saveState is SaveState with a hook run after the temporary file is durable
// and before the rename; an error from it aborts as a crash would, leaving
// the temporary file in place.
func saveState(path string, s State, afterTemp func() error) error {
	raw, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	raw = append(raw, '\n')
	if err := writeFileAtomic(path, stateTempPath(path), raw, 0o644, afterTemp); err != nil {
		return fmt.Errorf("save state %s: %w", path, err)
	}
	return nil
}

// stateTempPath is the temporary file SaveState writes before renaming. A
// fixed name means a crash leaves at most one stale temporary file, which the
// next save overwrites.
func stateTempPath(path string) string { return path + ".tmp" }

// writeFileAtomic writes data to tmp, syncs and closes it, calls afterTemp
// (if not nil), renames tmp to path and syncs path's directory. On a write
// error the temporary file is removed; on an afterTemp error it is left, as
// a crash would leave it.
func writeFileAtomic(path, tmp string, data []byte, perm os.FileMode, afterTemp func() error) error {
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		os.Remove(tmp)
		return werr
	}
	if afterTemp != nil {
		if err := afterTemp(); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return fsutil.SyncDir(filepath.Dir(path))
}
