// Package leakscan looks for secrets in files: it reads every regular file
// under the given directories (recursively, whatever the file: Pebble
// sstables, write-ahead logs and manifests, snapshots, logs) and reports
// each place where a needle occurs in raw form, as lower- or upper-case
// hex, or as standard or URL-safe base64 at each of the three byte
// alignments a needle can have inside a longer encoded string.
package leakscan

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// Needle is one secret to look for.
type Needle struct {
	// Name identifies the needle in hits (never its value).
	Name  string
	Value []byte
}

// Hit is one occurrence of a needle.
type Hit struct {
	Path   string
	Offset int64
	Needle string
	// Form is how it was encoded: "raw", "hex", "HEX", "base64/N" or
	// "base64url/N" with N the alignment (0, 1 or 2).
	Form string
}

func (h Hit) String() string {
	return fmt.Sprintf("%s at %s:%d (%s)", h.Needle, h.Path, h.Offset, h.Form)
}

// Pattern is one encoded form of a needle.
type Pattern struct {
	Needle string
	Form   string
	Bytes  []byte
}

// Patterns returns every form Scan looks for. A needle shorter than 3 bytes
// is only looked for raw and in hex (its base64 forms would be a character
// or two, found everywhere).
func Patterns(n Needle) []Pattern {
	out := []Pattern{
		{n.Name, "raw", n.Value},
		{n.Name, "hex", []byte(hex.EncodeToString(n.Value))},
		{n.Name, "HEX", bytes.ToUpper([]byte(hex.EncodeToString(n.Value)))},
	}
	if len(n.Value) < 3 {
		return out
	}
	for _, enc := range []struct {
		name string
		e    *base64.Encoding
	}{{"base64", base64.RawStdEncoding}, {"base64url", base64.RawURLEncoding}} {
		for k := 0; k < 3; k++ {
			out = append(out, Pattern{n.Name, fmt.Sprintf("%s/%d", enc.name, k), aligned(enc.e, n.Value, k)})
		}
	}
	return out
}

// aligned returns the base64 characters that depend only on v when v
// starts k bytes into the encoded string (k prefix bytes).
func aligned(e *base64.Encoding, v []byte, k int) []byte {
	buf := append(make([]byte, k), v...)
	s := e.EncodeToString(buf)
	start := (8*k + 5) / 6        // first character with no prefix bit
	end := (8 * (k + len(v))) / 6 // characters past it take bits after v
	return []byte(s[start:end])
}

// chunk is how much of a file Scan holds at once.
const chunk = 1 << 20

// Scan reads every regular file under dirs (symbolic links are not
// followed; a directory that does not exist is an error) and returns every
// hit, in walk order.
func Scan(ctx context.Context, dirs []string, needles []Needle) ([]Hit, error) {
	var pats []Pattern
	longest := 0
	for _, n := range needles {
		if len(n.Value) == 0 {
			return nil, fmt.Errorf("leakscan: needle %q is empty", n.Name)
		}
		for _, p := range Patterns(n) {
			pats = append(pats, p)
			longest = max(longest, len(p.Bytes))
		}
	}
	if len(pats) == 0 {
		return nil, errors.New("leakscan: no needles")
	}
	var hits []Hit
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if !d.Type().IsRegular() {
				return nil
			}
			h, err := scanFile(path, pats, longest)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while we walked (a live database)
			}
			hits = append(hits, h...)
			return err
		})
		if err != nil {
			return hits, fmt.Errorf("leakscan %s: %w", dir, err)
		}
	}
	return hits, nil
}

// Files counts the regular files Scan would read under dirs.
func Files(dirs []string) (int, error) {
	n := 0
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				n++
			}
			return err
		})
		if err != nil {
			return n, fmt.Errorf("leakscan %s: %w", dir, err)
		}
	}
	return n, nil
}

// scanFile reads path in chunks that overlap by longest-1 bytes, so that a
// pattern across a chunk boundary is found once.
func scanFile(path string, pats []Pattern, longest int) ([]Hit, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var hits []Hit
	buf := make([]byte, 0, chunk+longest)
	var base int64 // file offset of buf[0]
	for {
		n, rerr := io.ReadFull(f, buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		final := rerr != nil
		// Report a hit only if it starts before the retained tail, unless
		// this is the last chunk: the tail is searched again with more
		// bytes after it.
		limit := len(buf)
		if !final {
			limit = len(buf) - (longest - 1)
		}
		for _, p := range pats {
			for off := 0; ; {
				i := bytes.Index(buf[off:], p.Bytes)
				if i < 0 || off+i >= limit {
					break
				}
				hits = append(hits, Hit{Path: path, Offset: base + int64(off+i), Needle: p.Needle, Form: p.Form})
				off += i + 1
			}
		}
		if final {
			if errors.Is(rerr, io.EOF) || errors.Is(rerr, io.ErrUnexpectedEOF) {
				return hits, nil
			}
			return hits, fmt.Errorf("read %s: %w", path, rerr)
		}
		keep := longest - 1
		copy(buf, buf[len(buf)-keep:])
		base += int64(len(buf) - keep)
		buf = buf[:keep]
	}
}
