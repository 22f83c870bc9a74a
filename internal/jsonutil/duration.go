// Package jsonutil holds small JSON helpers shared by teeup's
// configuration and genesis formats.
package jsonutil

import (
	"fmt"
	"time"
)

// Duration is a time.Duration written in JSON as a Go duration string
// ("500ms", "15s"). Negative durations are refused.
type Duration time.Duration

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: want a Go duration such as 500ms or 15s: %w", b, err)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	*d = Duration(v)
	return nil
}
