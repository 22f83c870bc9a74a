package jsonutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// LoadStrict decodes the JSON file at path into v, refusing unknown fields
// (a misspelt option is an error, not silently ignored) and trailing data.
func LoadStrict(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if dec.More() {
		return fmt.Errorf("%s: trailing data after the JSON object", path)
	}
	return nil
}

// ResolvePaths makes each non-empty relative path absolute against the
// directory of the file that named it.
func ResolvePaths(file string, paths ...*string) {
	base := filepath.Dir(file)
	for _, p := range paths {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}
