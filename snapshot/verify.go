package snapshot

import (
	"context"
	"errors"
	"fmt"
	"path"
)

// maxProblems bounds how many problems one Verify error lists.
const maxProblems = 20

// Verify checks the snapshot in dir against its manifest: every listed file
// must exist with its size and SHA-256, and nothing else may be there
// (besides manifest.json and the directories holding listed files). It
// reads every byte. A failure wraps ErrCorrupt and names each offending file
// (up to 20); ctx is checked between reads.
func Verify(ctx context.Context, dir string) (*Manifest, error) {
	m, err := verify(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("verify snapshot %s: %w", dir, err)
	}
	return m, nil
}

func verify(ctx context.Context, dir string) (*Manifest, error) {
	m, err := Open(dir)
	if err != nil {
		return nil, err
	}
	t, err := scanTree(dir)
	if err != nil {
		return nil, err
	}
	if err := checkTree(m, t); err != nil {
		return nil, err
	}
	paths := make([]string, len(m.Files))
	for i, f := range m.Files {
		paths[i] = f.Path
	}
	results, err := hashFiles(ctx, dir, paths, false, nil)
	if err != nil {
		return nil, err
	}
	var problems problemList
	for i, f := range m.Files {
		switch r := results[i]; {
		case r.err != nil:
			problems.add("%s: %v", f.Path, r.err)
		case r.size != f.Size:
			problems.add("%s: size %d, manifest says %d", f.Path, r.size, f.Size)
		case r.sum != f.SHA256:
			problems.add("%s: sha256 %s, manifest says %s", f.Path, r.sum, f.SHA256)
		}
	}
	if err := problems.err(); err != nil {
		return nil, err
	}
	return m, nil
}

// checkTree compares the listing t of a snapshot directory with m: missing,
// unexpected and resized files and unexpected directories. It reads no file
// content.
func checkTree(m *Manifest, t *tree) error {
	listed := make(map[string]File, len(m.Files))
	dirs := make(map[string]bool)
	for _, f := range m.Files {
		listed[f.Path] = f
		for d := path.Dir(f.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var problems problemList
	for _, d := range t.dirs {
		if !dirs[d] {
			problems.add("%s: unexpected directory", d)
		}
	}
	for _, p := range t.files {
		if _, ok := listed[p]; !ok {
			problems.add("%s: unexpected file", p)
		}
	}
	for _, f := range m.Files {
		size, ok := t.sizes[f.Path]
		switch {
		case !ok:
			problems.add("%s: missing", f.Path)
		case size != f.Size:
			problems.add("%s: size %d, manifest says %d", f.Path, size, f.Size)
		}
	}
	return problems.err()
}

// problemList collects verification problems into one error.
type problemList struct {
	errs []error
	n    int
}

func (p *problemList) add(format string, args ...any) {
	p.n++
	if len(p.errs) < maxProblems {
		p.errs = append(p.errs, fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...))
	}
}

func (p *problemList) err() error {
	if p.n > len(p.errs) {
		p.errs = append(p.errs, fmt.Errorf("and %d more problems", p.n-len(p.errs)))
	}
	return errors.Join(p.errs...)
}
