package snapshot

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"
)

// Names of the entries of a snapshot directory.
const (
	// ManifestFile is the manifest's file name inside a snapshot directory.
	ManifestFile = "manifest.json"
	// LedgerSubdir is the subdirectory holding the ledger DB checkpoint.
	LedgerSubdir = "ledger"
	// StateFileName is the name of the captured distribution state file.
	StateFileName = "distribute.state"
)

// maxManifestSize bounds how much of a manifest.json is read. A manifest
// entry is about 150 bytes, so this allows about 100,000 files.
const maxManifestSize = 16 << 20

// maxNameLen is the longest snapshot name accepted.
const maxNameLen = 128

// partialMarker separates a snapshot name from the random suffix of the
// directory Create builds it in; names may not contain it.
const partialMarker = ".partial-"

// ErrCorrupt marks a snapshot whose manifest is invalid or whose files do not
// match their manifest. Errors wrapping it name the offending file.
var ErrCorrupt = errors.New("corrupt snapshot")

// ErrConflict is wrapped by Create's error when a snapshot of that name
// exists but describes another state (other labels, or no state file when
// one is required): it is not reused.
var ErrConflict = errors.New("an existing snapshot of that name does not match")

// File is one file of a snapshot with its checksum.
type File struct {
	// Path is slash-separated and relative to the snapshot directory.
	Path string `json:"path"`
	// Size is the file's length in bytes.
	Size int64 `json:"size"`
	// SHA256 is the lower-case hex SHA-256 of the file's content.
	SHA256 string `json:"sha256"`
}

// Manifest describes a snapshot; it is written as manifest.json inside the
// snapshot directory.
type Manifest struct {
	// Name is the snapshot's name, also the name of its directory.
	Name string `json:"name"`
	// CreatedAt is when Create wrote the manifest (UTC).
	CreatedAt time.Time `json:"created_at"`
	// Labels are facts supplied by the caller: chain_id, height, head_hash,
	// schema, mrenclave, version and the like.
	Labels map[string]string `json:"labels"`
	// Files lists every file of the snapshot except manifest.json itself,
	// sorted by Path.
	Files []File `json:"files"`
	// Ledger is the subdirectory holding the DB checkpoint: LedgerSubdir.
	Ledger string `json:"ledger"`
	// StateFile is StateFileName when a distribution state file was
	// captured, and empty otherwise.
	StateFile string `json:"state_file,omitempty"`
}

// Open reads and validates the manifest of the snapshot in dir without
// checking the files it lists (see Verify). The manifest must be exactly one
// JSON object with no unknown fields, and every path in it must be a clean
// relative path inside the snapshot.
func Open(dir string) (*Manifest, error) {
	p := filepath.Join(dir, ManifestFile)
	f, err := os.Open(p)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %w", dir, err)
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: read %s: %w", dir, ManifestFile, err)
	}
	m, err := parseManifest(raw)
	if err != nil {
		return nil, fmt.Errorf("open snapshot %s: %s: %w", dir, ManifestFile, err)
	}
	return m, nil
}

// parseManifest decodes and validates manifest bytes. Every error wraps
// ErrCorrupt.
func parseManifest(raw []byte) (*Manifest, error) {
	if len(raw) > maxManifestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrCorrupt, maxManifestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var m Manifest
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: decode: %w", ErrCorrupt, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrCorrupt)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return &m, nil
}

// validate checks everything about m that does not need the file system.
func (m *Manifest) validate() error {
	if err := validateName(m.Name); err != nil {
		return err
	}
	if m.CreatedAt.IsZero() {
		return errors.New("created_at is missing")
	}
	if m.Ledger != LedgerSubdir {
		return fmt.Errorf("ledger is %q, want %q", m.Ledger, LedgerSubdir)
	}
	if m.StateFile != "" && m.StateFile != StateFileName {
		return fmt.Errorf("state_file is %q, want %q or nothing", m.StateFile, StateFileName)
	}
	ledgerFiles, stateFound := 0, false
	for i, f := range m.Files {
		if err := validatePath(f.Path); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("file %q: files are not sorted by path without duplicates", f.Path)
		}
		switch {
		case strings.HasPrefix(f.Path, m.Ledger+"/"):
			ledgerFiles++
		case m.StateFile != "" && f.Path == m.StateFile:
			stateFound = true
		default:
			return fmt.Errorf("file %q: neither in %s/ nor the state file", f.Path, m.Ledger)
		}
		if f.Size < 0 {
			return fmt.Errorf("file %q: negative size %d", f.Path, f.Size)
		}
		if err := validateSum(f.SHA256); err != nil {
			return fmt.Errorf("file %q: %w", f.Path, err)
		}
	}
	if ledgerFiles == 0 {
		return fmt.Errorf("no files in %s/", m.Ledger)
	}
	if m.StateFile != "" && !stateFound {
		return fmt.Errorf("file %q: state file not listed in files", m.StateFile)
	}
	return nil
}

// validateName checks a snapshot name: 1 to 128 characters from
// [A-Za-z0-9._-], not "." or "..", and not containing ".partial-" (which
// marks Create's unfinished directories).
func validateName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return fmt.Errorf("snapshot name %q: want 1 to %d characters", name, maxNameLen)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("snapshot name %q is reserved", name)
	}
	for _, c := range []byte(name) {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("snapshot name %q: character %q not in [A-Za-z0-9._-]", name, c)
		}
	}
	if strings.Contains(name, partialMarker) {
		return fmt.Errorf("snapshot name %q: must not contain %q", name, partialMarker)
	}
	return nil
}

// validatePath checks that p is a clean, relative, slash-separated path that
// stays inside the snapshot directory and is not the manifest itself.
func validatePath(p string) error {
	if p == "" || p == "." || !fs.ValidPath(p) {
		return errors.New("not a clean relative path inside the snapshot")
	}
	if strings.ContainsRune(p, '\\') {
		return errors.New("path contains a backslash")
	}
	if path.Clean(p) != p {
		return errors.New("path is not clean")
	}
	if p == ManifestFile {
		return fmt.Errorf("%s may not list itself", ManifestFile)
	}
	return nil
}

// validateSum checks a lower-case hex SHA-256.
func validateSum(s string) error {
	if len(s) != 64 {
		return fmt.Errorf("sha256 %q: want 64 hex digits", s)
	}
	if _, err := hex.DecodeString(s); err != nil || strings.ToLower(s) != s {
		return fmt.Errorf("sha256 %q: want lower-case hex", s)
	}
	return nil
}

// writeManifest writes m as dir/manifest.json, which must not exist, and
// syncs it.
func writeManifest(dir string, m *Manifest) error {
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode manifest: %w", err)
	}
	raw = append(raw, '\n')
	p := filepath.Join(dir, ManifestFile)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("write manifest: %w", err)
	}
	_, err = f.Write(raw)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write manifest %s: %w", p, err)
	}
	return nil
}
