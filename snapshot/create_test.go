package snapshot

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestCreateVerify(t *testing.T) {
	f := newFixture(t, 3000)
	var progress [][2]int64
	m, err := Create(context.Background(), CreateOptions{
		Root:       f.root,
		Name:       "pre-v2",
		Checkpoint: f.checkpoint,
		StateFile:  f.state,
		Labels:     map[string]string{"chain_id": "test", "height": "7"},
		Progress:   func(done, total int64) { progress = append(progress, [2]int64{done, total}) },
	})
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	dir := filepath.Join(f.root, "pre-v2")
	if m.Name != "pre-v2" || m.Ledger != LedgerSubdir || m.StateFile != StateFileName {
		t.Errorf("manifest header = %q %q %q", m.Name, m.Ledger, m.StateFile)
	}
	if !reflect.DeepEqual(m.Labels, map[string]string{"chain_id": "test", "height": "7"}) {
		t.Errorf("labels = %v", m.Labels)
	}
	if m.CreatedAt.IsZero() {
		t.Error("CreatedAt is zero")
	}

	// The manifest lists exactly the files on disk with their real sums.
	sums := treeSums(t, dir)
	var total int64
	listed := make(map[string]bool)
	for _, file := range m.Files {
		listed[file.Path] = true
		if sums[file.Path] != file.SHA256 {
			t.Errorf("%s: manifest sha256 %s, file has %s", file.Path, file.SHA256, sums[file.Path])
		}
		info, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file.Path)))
		if err != nil {
			t.Fatal(err)
		}
		if info.Size() != file.Size {
			t.Errorf("%s: manifest size %d, file has %d", file.Path, file.Size, info.Size())
		}
		total += file.Size
	}
	for p, sum := range sums {
		if sum != "dir" && p != ManifestFile && !listed[p] {
			t.Errorf("%s on disk but not in manifest", p)
		}
	}
	if !slices.IsSortedFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) }) {
		t.Error("files not sorted by path")
	}
	stateCopy, err := os.ReadFile(filepath.Join(dir, StateFileName))
	if err != nil || string(stateCopy) != `{"next_block":42}`+"\n" {
		t.Errorf("state file copy = %q, %v", stateCopy, err)
	}
	firstFileWithPrefix(t, m, "ledger/MANIFEST-")
	firstFileWithPrefix(t, m, "ledger/OPTIONS-")

	// Sstables are hard links of the live DB's: the checkpoint is cheap.
	// Everything else was copied.
	ssts := 0
	for _, file := range m.Files {
		rel, ok := strings.CutPrefix(file.Path, "ledger/")
		if !ok {
			continue
		}
		snapInfo, err := os.Stat(filepath.Join(dir, filepath.FromSlash(file.Path)))
		if err != nil {
			t.Fatal(err)
		}
		liveInfo, err := os.Stat(filepath.Join(f.dbDir, rel))
		same := err == nil && os.SameFile(snapInfo, liveInfo)
		isSST := strings.HasSuffix(rel, ".sst")
		if isSST {
			ssts++
		}
		if isSST != same {
			t.Errorf("%s: shares the live DB's inode = %v, want %v", file.Path, same, isSST)
		}
	}
	if ssts < 2 {
		t.Errorf("snapshot holds %d sstables, want at least 2", ssts)
	}

	// Progress went monotonically up to the total.
	if len(progress) == 0 {
		t.Fatal("Progress never called")
	}
	last := progress[len(progress)-1]
	if last[0] != total || last[1] != total {
		t.Errorf("last progress = %v, want [%d %d]", last, total, total)
	}
	for i := 1; i < len(progress); i++ {
		if progress[i][0] < progress[i-1][0] {
			t.Fatalf("progress went down: %v then %v", progress[i-1], progress[i])
		}
	}

	got, err := Verify(context.Background(), dir)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Errorf("Verify manifest = %+v, Create returned %+v", got, m)
	}
	if leftovers := siblings(t, f.root, "."); len(leftovers) != 0 {
		t.Errorf("leftover hidden entries in root: %v", leftovers)
	}
}

func TestCreateIdempotent(t *testing.T) {
	f := newFixture(t, 2000)
	calls := 0
	opts := CreateOptions{
		Root:       f.root,
		Name:       "flagday-100",
		Checkpoint: func(dst string) error { calls++; return f.checkpoint(dst) },
		StateFile:  f.state,
		Labels:     map[string]string{"height": "100"},
	}
	first, err := Create(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	// The live DB moves on; a resumed flag day calls Create again.
	f.put(t, 0, 10, "later")
	second, err := Create(context.Background(), opts)
	if err != nil {
		t.Fatalf("second Create: %v", err)
	}
	if calls != 1 {
		t.Errorf("Checkpoint called %d times, want 1", calls)
	}
	if !reflect.DeepEqual(first, second) {
		t.Errorf("second manifest %+v differs from first %+v", second, first)
	}

	// Different labels: the existing snapshot describes another state.
	other := opts
	other.Labels = map[string]string{"height": "101"}
	if _, err := Create(context.Background(), other); !errors.Is(err, ErrConflict) {
		t.Errorf("Create with other labels: err = %v, want different labels", err)
	}
	// Now required state, but the snapshot was taken without one.
	noState := opts
	noState.Name = "no-state"
	noState.StateFile = filepath.Join(f.base, "absent")
	noState.AllowMissingState = true
	if _, err := Create(context.Background(), noState); err != nil {
		t.Fatal(err)
	}
	noState.AllowMissingState = false
	if _, err := Create(context.Background(), noState); !errors.Is(err, ErrConflict) {
		t.Errorf("Create requiring state over a stateless snapshot: err = %v", err)
	}
	if calls != 2 {
		t.Errorf("Checkpoint called %d times, want 2", calls)
	}
}

func TestCreateExistingCorrupt(t *testing.T) {
	f := newFixture(t, 1000)
	m := f.create(t, "snap")
	dir := filepath.Join(f.root, "snap")
	statePath := filepath.Join(dir, StateFileName)
	if err := os.WriteFile(statePath, []byte(`{"next_block":43}`+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := treeSums(t, dir)
	calls := 0
	_, err := Create(context.Background(), CreateOptions{
		Root: f.root, Name: "snap", StateFile: f.state, Labels: m.Labels,
		Checkpoint: func(dst string) error { calls++; return f.checkpoint(dst) },
	})
	if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), StateFileName) {
		t.Fatalf("Create over a corrupt snapshot: err = %v, want ErrCorrupt naming %s", err, StateFileName)
	}
	if calls != 0 {
		t.Errorf("Checkpoint called %d times", calls)
	}
	if after := treeSums(t, dir); !reflect.DeepEqual(before, after) {
		t.Error("corrupt snapshot was modified")
	}
}

func TestCreateInterrupted(t *testing.T) {
	f := newFixture(t, 2000)
	errBoom := errors.New("disk on fire")
	tests := []struct {
		name    string
		opts    func(ctx context.Context, cancel context.CancelFunc) CreateOptions
		wantErr error
	}{
		{
			name: "checkpoint fails after writing",
			opts: func(context.Context, context.CancelFunc) CreateOptions {
				return CreateOptions{Checkpoint: func(dst string) error {
					if err := f.checkpoint(dst); err != nil {
						return err
					}
					return errBoom
				}}
			},
			wantErr: errBoom,
		},
		{
			name: "progress cancels",
			opts: func(_ context.Context, cancel context.CancelFunc) CreateOptions {
				return CreateOptions{
					Checkpoint: f.checkpoint,
					Progress: func(done, total int64) {
						if done > 0 {
							cancel()
						}
					},
				}
			},
			wantErr: context.Canceled,
		},
		{
			name: "checkpoint cancels",
			opts: func(_ context.Context, cancel context.CancelFunc) CreateOptions {
				return CreateOptions{Checkpoint: func(dst string) error { cancel(); return f.checkpoint(dst) }}
			},
			wantErr: context.Canceled,
		},
		{
			name: "cancelled before start",
			opts: func(_ context.Context, cancel context.CancelFunc) CreateOptions {
				cancel()
				return CreateOptions{Checkpoint: f.checkpoint}
			},
			wantErr: context.Canceled,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			opts := tt.opts(ctx, cancel)
			opts.Root, opts.Name, opts.StateFile = f.root, "interrupted", f.state
			if _, err := Create(ctx, opts); !errors.Is(err, tt.wantErr) {
				t.Fatalf("Create: err = %v, want %v", err, tt.wantErr)
			}
			if exists(filepath.Join(f.root, "interrupted")) {
				t.Fatal("interrupted Create left Root/Name")
			}
			if exists(f.root) {
				if left := siblings(t, f.root, ".interrupted"); len(left) != 0 {
					t.Errorf("interrupted Create left %v", left)
				}
			}
		})
	}
	// The flag day resumes: Create now succeeds.
	f.create(t, "interrupted")
	if _, err := Verify(context.Background(), filepath.Join(f.root, "interrupted")); err != nil {
		t.Fatal(err)
	}
}

// TestCreateAfterCrash simulates a process killed mid-Create: its partial
// directory (even with a complete-looking manifest) is invisible to List and
// removed by the next Create of the same name, and only that name's.
func TestCreateAfterCrash(t *testing.T) {
	f := newFixture(t, 1000)
	m := f.create(t, "crashed")
	src := filepath.Join(f.root, "crashed")
	partial := filepath.Join(f.root, ".crashed.partial-123456")
	if err := CopyDir(context.Background(), src, partial); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(src); err != nil {
		t.Fatal(err)
	}
	otherPartial := filepath.Join(f.root, ".other.partial-999")
	if err := os.Mkdir(otherPartial, 0o700); err != nil {
		t.Fatal(err)
	}
	list, err := List(f.root)
	if err != nil || len(list) != 0 {
		t.Fatalf("List with only partial dirs = %v, %v; want none", list, err)
	}
	again, err := Create(context.Background(), CreateOptions{
		Root: f.root, Name: "crashed", Checkpoint: f.checkpoint, StateFile: f.state, Labels: m.Labels,
	})
	if err != nil {
		t.Fatal(err)
	}
	if exists(partial) {
		t.Error("leftover partial directory not removed")
	}
	if !exists(otherPartial) {
		t.Error("another name's partial directory was removed")
	}
	list, err = List(f.root)
	if err != nil || len(list) != 1 || list[0].Name != "crashed" || !list[0].CreatedAt.Equal(again.CreatedAt) {
		t.Fatalf("List = %v, %v", list, err)
	}
}

func TestCreateRejects(t *testing.T) {
	f := newFixture(t, 500)
	tests := []struct {
		name string
		opts CreateOptions
		want string
	}{
		{"empty name", CreateOptions{Name: ""}, "want 1 to 128"},
		{"dot", CreateOptions{Name: "."}, "reserved"},
		{"dot dot", CreateOptions{Name: ".."}, "reserved"},
		{"slash", CreateOptions{Name: "a/b"}, "not in [A-Za-z0-9._-]"},
		{"traversal", CreateOptions{Name: "../x"}, "not in [A-Za-z0-9._-]"},
		{"space", CreateOptions{Name: "a b"}, "not in [A-Za-z0-9._-]"},
		{"backslash", CreateOptions{Name: `a\b`}, "not in [A-Za-z0-9._-]"},
		{"non-ascii", CreateOptions{Name: "é"}, "not in [A-Za-z0-9._-]"},
		{"nul", CreateOptions{Name: "a\x00"}, "not in [A-Za-z0-9._-]"},
		{"too long", CreateOptions{Name: strings.Repeat("a", 129)}, "want 1 to 128"},
		{"partial marker", CreateOptions{Name: "a.partial-b"}, ".partial-"},
		{"no root", CreateOptions{Root: "-", Name: "ok"}, "no root"},
		{"no checkpoint", CreateOptions{Name: "ok", Checkpoint: nil}, "no checkpoint function"},
		{"missing state file", CreateOptions{Name: "ok", StateFile: "absent"}, "no such file"},
		{"state file is a directory", CreateOptions{Name: "ok", StateFile: "."}, "not a regular file"},
		{"checkpoint writes nothing", CreateOptions{Name: "ok", Checkpoint: func(string) error { return nil }}, "did not create directory ledger"},
		{"checkpoint writes an empty dir", CreateOptions{Name: "ok", Checkpoint: func(dst string) error { return os.Mkdir(dst, 0o700) }}, "no files in ledger/"},
		{"checkpoint writes a symlink", CreateOptions{Name: "ok", Checkpoint: func(dst string) error {
			if err := os.Mkdir(dst, 0o700); err != nil {
				return err
			}
			return os.Symlink("/etc/passwd", filepath.Join(dst, "000001.sst"))
		}}, "ledger/000001.sst: not a regular file"},
		{"checkpoint writes outside ledger", CreateOptions{Name: "ok", Checkpoint: func(dst string) error {
			if err := f.checkpoint(dst); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(filepath.Dir(dst), "stray"), nil, 0o600)
		}}, `"stray": neither in ledger/`},
		{"checkpoint leaves an empty subdirectory", CreateOptions{Name: "ok", Checkpoint: func(dst string) error {
			if err := f.checkpoint(dst); err != nil {
				return err
			}
			return os.Mkdir(filepath.Join(dst, "sub"), 0o700)
		}}, "ledger/sub: unexpected directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			opts := tt.opts
			if opts.Root == "-" {
				opts.Root = ""
			} else {
				opts.Root = root
			}
			if opts.Checkpoint == nil && tt.name != "no checkpoint" {
				opts.Checkpoint = f.checkpoint
			}
			switch opts.StateFile {
			case "absent":
				opts.StateFile = filepath.Join(f.base, "absent.state")
			case ".":
				opts.StateFile = f.base
			}
			_, err := Create(context.Background(), opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Create: err = %v, want containing %q", err, tt.want)
			}
			if opts.Name != "" && exists(filepath.Join(root, opts.Name)) && validateName(opts.Name) == nil {
				t.Error("failed Create left Root/Name")
			}
			if exists(root) {
				if left := siblings(t, root, ""); len(left) != 0 {
					t.Errorf("failed Create left %v in root", left)
				}
			}
		})
	}
}

func TestCreateAllowMissingState(t *testing.T) {
	f := newFixture(t, 500)
	m, err := Create(context.Background(), CreateOptions{
		Root: f.root, Name: "nostate", Checkpoint: f.checkpoint,
		StateFile: filepath.Join(f.base, "absent.state"), AllowMissingState: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.StateFile != "" {
		t.Errorf("StateFile = %q, want empty", m.StateFile)
	}
	for _, file := range m.Files {
		if !strings.HasPrefix(file.Path, "ledger/") {
			t.Errorf("unexpected file %s", file.Path)
		}
	}
	if _, err := os.Stat(filepath.Join(f.root, "nostate", StateFileName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state file copy exists: %v", err)
	}
	// AllowMissingState does not skip a state file that exists.
	m, err = Create(context.Background(), CreateOptions{
		Root: f.root, Name: "withstate", Checkpoint: f.checkpoint,
		StateFile: f.state, AllowMissingState: true,
	})
	if err != nil || m.StateFile != StateFileName {
		t.Fatalf("Create with an existing state file: %v, StateFile %q", err, m.StateFile)
	}
}

func TestValidNames(t *testing.T) {
	for _, name := range []string{"a", "pre-v2.0_flagday", "H-1000", strings.Repeat("z", 128), ".hidden", "..."} {
		if err := validateName(name); err != nil {
			t.Errorf("validateName(%q) = %v, want nil", name, err)
		}
	}
}
