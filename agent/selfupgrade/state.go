package selfupgrade

import (
	"errors"
	"fmt"
	"strings"

	"github.com/teeup/teeup/internal/wire"
)

// StateDomain starts the encoding of the state an agent hands to its
// successor.
const StateDomain = "teeup agent state v1"

// Limits on a decoded State (it arrives over the handover from an
// attested agent, and is still parsed as untrusted bytes).
const (
	MaxEntries    = 256
	MaxNameLen    = 255
	maxEntryBytes = 64 << 10
)

// Entry is one piece of the state an agent holds sealed to itself: a file
// of its held-keys directory, by name, in the clear.
type Entry struct {
	Name string
	Data []byte
}

// State is everything an agent holds sealed to its own MRENCLAVE, as it
// moves to the successor agent.
type State struct {
	Entries []Entry
}

// ErrBadState is wrapped by the errors of a State that does not decode or
// validate.
var ErrBadState = errors.New("malformed agent state")

// validName accepts a plain file name: no separators, no dot names.
func validName(n string) error {
	if n == "" || len(n) > MaxNameLen || n == "." || n == ".." || strings.ContainsAny(n, "/\x00") || n[0] == '.' {
		return fmt.Errorf("%w: entry name %q is not a plain file name", ErrBadState, n)
	}
	return nil
}

// Validate checks names (plain, unique) and sizes.
func (s State) Validate() error {
	if len(s.Entries) > MaxEntries {
		return fmt.Errorf("%w: %d entries, at most %d", ErrBadState, len(s.Entries), MaxEntries)
	}
	seen := map[string]bool{}
	for _, e := range s.Entries {
		if err := validName(e.Name); err != nil {
			return err
		}
		if seen[e.Name] {
			return fmt.Errorf("%w: entry %q twice", ErrBadState, e.Name)
		}
		seen[e.Name] = true
		if len(e.Data) > maxEntryBytes {
			return fmt.Errorf("%w: entry %q is %d bytes, at most %d", ErrBadState, e.Name, len(e.Data), maxEntryBytes)
		}
	}
	return nil
}

// MarshalBinary encodes the state: StateDomain (string) | count u32 |
// count × (name string | data bytes). It is never empty, as the handover
// requires a non-empty secret.
func (s State) MarshalBinary() ([]byte, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	n := 4 + len(StateDomain) + 4
	for _, e := range s.Entries {
		n += 8 + len(e.Name) + len(e.Data)
	}
	enc := wire.NewEncoder(n)
	enc.String(StateDomain)
	enc.U32(uint32(len(s.Entries)))
	for _, e := range s.Entries {
		enc.String(e.Name)
		enc.Var(e.Data)
	}
	return enc.Bytes(), nil
}

// UnmarshalBinary decodes a state made by MarshalBinary, bounding every
// length and refusing trailing bytes, then validates it.
func (s *State) UnmarshalBinary(b []byte) error {
	d := wire.NewDecoder("agent state", b)
	if dom := d.String("domain", len(StateDomain)); d.Err() == nil && dom != StateDomain {
		return fmt.Errorf("%w: domain %q", ErrBadState, dom)
	}
	n := d.Count("entries", MaxEntries)
	var out State
	for i := 0; i < n && d.Err() == nil; i++ {
		e := Entry{Name: d.String("name", MaxNameLen)}
		e.Data = append([]byte{}, d.Var("data", maxEntryBytes)...)
		out.Entries = append(out.Entries, e)
	}
	if err := d.Finish(); err != nil {
		return fmt.Errorf("%w: %w", ErrBadState, err)
	}
	if err := out.Validate(); err != nil {
		return err
	}
	*s = out
	return nil
}
