package statetransfer

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func readFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestSendReceiveRoundTrip(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	big := strings.Repeat("x", 3*copyBuffer+17) // spans several buffers
	files := map[string]string{"000001.sst": big, "MANIFEST-000005": "manifest", "OPTIONS-000007": "", "CURRENT": "MANIFEST-000005\n"}
	writeFiles(t, src, files)
	var stream bytes.Buffer
	var sentProgress int64
	st, err := SendDir(context.Background(), &stream, src, func(done, total int64) { sentProgress = done })
	if err != nil {
		t.Fatal(err)
	}
	if st.Files != 4 || st.Bytes != int64(len(big)+8+len("MANIFEST-000005\n")) || sentProgress != st.Bytes {
		t.Fatalf("sent %+v, progress %d", st, sentProgress)
	}
	dst := filepath.Join(t.TempDir(), "dst")
	got, err := ReceiveDir(context.Background(), &stream, dst, Limits{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got != st {
		t.Fatalf("received %+v, sent %+v", got, st)
	}
	if have := readFiles(t, dst); len(have) != len(files) {
		t.Fatalf("received %d files", len(have))
	} else {
		for k, v := range files {
			if have[k] != v {
				t.Fatalf("file %s differs", k)
			}
		}
	}
	info, err := os.Stat(dst)
	if err != nil || info.Mode().Perm() != 0o700 {
		t.Fatalf("dst mode %v, %v", info.Mode(), err)
	}
}

func TestSendDirRefusesSubdirectories(t *testing.T) {
	src := t.TempDir()
	if err := os.Mkdir(filepath.Join(src, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := SendDir(context.Background(), io.Discard, src, nil); err == nil {
		t.Fatal("a directory with a subdirectory was sent")
	}
}

// stream builds a raw stream from records.
type rawStream struct{ bytes.Buffer }

func (s *rawStream) rec(typ byte, body []byte) *rawStream {
	_ = writeRecord(&s.Buffer, typ, body)
	return s
}

func (s *rawStream) file(name, body string) *rawStream {
	s.rec(recFile, encodeFileHeader(fileHeader{name: name, size: int64(len(body))}))
	s.WriteString(body)
	return s
}

func TestReceiveDirRejects(t *testing.T) {
	cases := []struct {
		name   string
		stream func() *rawStream
		lim    Limits
	}{
		{"empty stream", func() *rawStream { return &rawStream{} }, Limits{}},
		{"no summary first", func() *rawStream { return (&rawStream{}).file("a", "x") }, Limits{}},
		{"path in a name", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("../evil", "x")
		}, Limits{}},
		{"slash in a name", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("a/b", "x")
		}, Limits{}},
		{"dot name", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("..", "x")
		}, Limits{}},
		{"file twice", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(2, 2)).file("a", "x").file("a", "y")
		}, Limits{}},
		{"more than announced", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("a", "xx")
		}, Limits{}},
		{"over the file limit", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(3, 3))
		}, Limits{MaxFiles: 2}},
		{"over the byte limit", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 100))
		}, Limits{MaxBytes: 10}},
		{"truncated file", func() *rawStream {
			s := (&rawStream{}).rec(recSummary, encodeCounts(1, 10))
			s.rec(recFile, encodeFileHeader(fileHeader{name: "a", size: 10}))
			s.WriteString("short")
			return s
		}, Limits{}},
		{"no end record", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("a", "x")
		}, Limits{}},
		{"end short of the summary", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(2, 2)).file("a", "x").rec(recEnd, encodeCounts(1, 1))
		}, Limits{}},
		{"end disagrees with what came", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("a", "x").rec(recEnd, encodeCounts(1, 2))
		}, Limits{}},
		{"unknown record", func() *rawStream {
			return (&rawStream{}).rec(recSummary, encodeCounts(0, 0)).rec('Z', nil)
		}, Limits{}},
		{"oversized record", func() *rawStream {
			s := &rawStream{}
			s.Write([]byte{recSummary, 0xff, 0xff, 0xff, 0xff})
			return s
		}, Limits{}},
		{"summary with trailing bytes", func() *rawStream {
			return (&rawStream{}).rec(recSummary, append(encodeCounts(0, 0), 1))
		}, Limits{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "dst")
			if _, err := ReceiveDir(context.Background(), tc.stream(), dst, tc.lim, nil); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

func TestReceiveDirRefusesExistingDir(t *testing.T) {
	s := (&rawStream{}).rec(recSummary, encodeCounts(0, 0)).rec(recEnd, encodeCounts(0, 0))
	if _, err := ReceiveDir(context.Background(), s, t.TempDir(), Limits{}, nil); err == nil {
		t.Fatal("received into an existing directory")
	}
}

func TestReceiveDirHonoursContext(t *testing.T) {
	s := (&rawStream{}).rec(recSummary, encodeCounts(1, 1)).file("a", "x").rec(recEnd, encodeCounts(1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ReceiveDir(ctx, s, filepath.Join(t.TempDir(), "d"), Limits{}, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestResultRoundTripAndRejects(t *testing.T) {
	for _, res := range []Result{{ResultInstalled, ""}, {ResultNotNeeded, "have 10"}, {ResultRefused, strings.Repeat("m", 2000)}} {
		var b bytes.Buffer
		if err := WriteResult(&b, res); err != nil {
			t.Fatal(err)
		}
		got, err := ReadResult(&b)
		if err != nil {
			t.Fatal(err)
		}
		want := res
		if len(want.Message) > 1024 {
			want.Message = want.Message[:1024]
		}
		if got != want {
			t.Fatalf("got %+v, want %+v", got, want)
		}
	}
	bad := []func() *rawStream{
		func() *rawStream { return (&rawStream{}).rec(recEnd, nil) },
		func() *rawStream { return (&rawStream{}).rec(recResult, []byte{9, 0, 0, 0, 0}) },
		func() *rawStream { return (&rawStream{}).rec(recResult, []byte{1}) },
		func() *rawStream { return &rawStream{} },
	}
	for i, mk := range bad {
		if _, err := ReadResult(mk()); err == nil {
			t.Fatalf("case %d: accepted", i)
		}
	}
}

// FuzzReceiveDir feeds arbitrary bytes to the receiver: it must return
// (never panic), never write outside its directory, and whatever it accepts
// must have matched its own summary.
func FuzzReceiveDir(f *testing.F) {
	seed := (&rawStream{}).rec(recSummary, encodeCounts(2, 3)).file("a", "x").file("b.sst", "yz").rec(recEnd, encodeCounts(2, 3))
	f.Add(seed.Bytes())
	f.Add((&rawStream{}).rec(recSummary, encodeCounts(0, 0)).rec(recEnd, encodeCounts(0, 0)).Bytes())
	f.Add([]byte{recFile, 0, 0, 0, 1, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		root := t.TempDir()
		dst := filepath.Join(root, "dst")
		st, err := ReceiveDir(context.Background(), bytes.NewReader(b), dst, Limits{MaxFiles: 16, MaxBytes: 1 << 16}, nil)
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.Name() != "dst" {
				t.Fatalf("wrote %s outside the destination", e.Name())
			}
		}
		if err == nil {
			_, scanned, serr := Scan(dst)
			if serr != nil || scanned != st {
				t.Fatalf("accepted %+v, directory holds %+v (%v)", st, scanned, serr)
			}
		}
	})
}

// FuzzDecodeResult checks the result decoder on arbitrary bytes.
func FuzzDecodeResult(f *testing.F) {
	var b bytes.Buffer
	_ = WriteResult(&b, Result{ResultRefused, "no"})
	f.Add(b.Bytes()[5:])
	f.Fuzz(func(t *testing.T, body []byte) {
		res, err := decodeResult(body)
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := WriteResult(&out, res); err != nil {
			t.Fatal(err)
		}
		again, err := ReadResult(&out)
		if err != nil || again != res {
			t.Fatalf("round trip: %+v -> %+v, %v", res, again, err)
		}
	})
}
