package release

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fileURL returns the file:// URL of an absolute path.
func fileURL(path string) string { return (&url.URL{Scheme: "file", Path: path}).String() }

func TestFetch(t *testing.T) {
	content := bytes.Repeat([]byte("teeup node binary "), 1000)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/rel/teeup-node" {
			http.NotFound(w, r)
			return
		}
		w.Write(content)
	}))
	defer srv.Close()
	srcDir := t.TempDir()
	src := filepath.Join(srcDir, "teeup node") // a space, escaped in the URL
	if err := os.WriteFile(src, content, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		url     string
		fetcher Fetcher
		mode    os.FileMode
	}{
		{"http", srv.URL + "/rel/teeup-node", Fetcher{Client: srv.Client()}, 0o644},
		{"http with default client", srv.URL + "/rel/teeup-node", Fetcher{}, 0o644},
		{"file", fileURL(src), Fetcher{}, 0o644},
		{"file with mode", fileURL(src), Fetcher{Mode: 0o755}, 0o755},
		{"exact size limit", fileURL(src), Fetcher{MaxSize: int64(len(content))}, 0o644},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			dst := filepath.Join(dir, "teeup-node")
			if err := os.WriteFile(dst, []byte("an older version"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.fetcher.Fetch(context.Background(), tc.url, dst); err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			got, err := os.ReadFile(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, content) {
				t.Fatalf("fetched %d bytes that differ from the %d served", len(got), len(content))
			}
			st, _ := os.Stat(dst)
			if st.Mode().Perm() != tc.mode {
				t.Errorf("mode %v, want %v", st.Mode().Perm(), tc.mode)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("Fetch left %d entries in the directory, want 1", len(entries))
			}
		})
	}
	// The package-level helper works too.
	dst := filepath.Join(t.TempDir(), "x")
	if err := Fetch(context.Background(), srv.URL+"/rel/teeup-node", dst, srv.Client()); err != nil {
		t.Fatalf("Fetch: %v", err)
	}
}

func TestFetchRejects(t *testing.T) {
	const limit = 1000
	big := bytes.Repeat([]byte("x"), limit+1)
	bodyStarted := make(chan struct{}, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i <= limit; i += 100 { // no Content-Length: the limit must hold while streaming
			w.Write(big[:100])
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/huge-announced", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(DefaultMaxFetchSize+1))
		w.Write([]byte("x"))
	})
	mux.HandleFunc("/short", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.Write([]byte("only ten b"))
	})
	mux.HandleFunc("/error", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError)
	})
	mux.HandleFunc("/stall", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("the first part of the body"))
		w.(http.Flusher).Flush()
		bodyStarted <- struct{}{}
		<-r.Context().Done() // until the client goes away
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	srcDir := t.TempDir()
	bigFile := filepath.Join(srcDir, "big")
	if err := os.WriteFile(bigFile, big, 0o644); err != nil {
		t.Fatal(err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	cases := []struct {
		name    string
		url     string
		fetcher Fetcher
		ctx     func(t *testing.T) context.Context
		wantIs  error
		want    string
	}{
		{name: "missing file", url: fileURL(filepath.Join(srcDir, "missing")), wantIs: os.ErrNotExist, want: "no such file"},
		{name: "directory", url: fileURL(srcDir), want: "not a regular file"},
		{name: "http 404", url: srv.URL + "/missing", want: "server answered 404 Not Found"},
		{name: "http 500", url: srv.URL + "/error", want: "server answered 500 Internal Server Error"},
		{name: "connection refused", url: closedURL + "/x", want: "connect"},
		{name: "oversize http body", url: srv.URL + "/big", fetcher: Fetcher{MaxSize: limit}, wantIs: ErrTooLarge, want: "1001 bytes"},
		{name: "oversize chunked http body", url: srv.URL + "/big-chunked", fetcher: Fetcher{MaxSize: limit}, wantIs: ErrTooLarge, want: "more than 1000 bytes"},
		{name: "oversize announced with the default limit", url: srv.URL + "/huge-announced", wantIs: ErrTooLarge, want: strconv.Itoa(DefaultMaxFetchSize + 1)},
		{name: "oversize file", url: fileURL(bigFile), fetcher: Fetcher{MaxSize: limit}, wantIs: ErrTooLarge, want: "larger than the size limit"},
		{name: "body shorter than announced", url: srv.URL + "/short", want: "unexpected EOF"},
		{name: "cancelled before an http fetch", url: srv.URL + "/big", ctx: func(*testing.T) context.Context { return cancelled }, wantIs: context.Canceled, want: "canceled"},
		{name: "cancelled before a file copy", url: fileURL(bigFile), ctx: func(*testing.T) context.Context { return cancelled }, wantIs: context.Canceled, want: "canceled"},
		{name: "cancelled during the body", url: srv.URL + "/stall", ctx: func(t *testing.T) context.Context {
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				select {
				case <-bodyStarted:
				case <-ctx.Done():
				}
				cancel()
			}()
			t.Cleanup(cancel)
			return ctx
		}, wantIs: context.Canceled, want: "canceled"},
		{name: "ftp scheme", url: "ftp://127.0.0.1/x", want: `scheme "ftp"`},
		{name: "relative file URL", url: "file:x", want: "absolute path"},
		{name: "empty URL", url: "", want: "url is missing"},
	}
	for _, tc := range cases {
		for _, existing := range []bool{false, true} {
			name := tc.name
			if existing {
				name += " over an existing file"
			}
			t.Run(name, func(t *testing.T) {
				ctx := context.Background()
				if tc.ctx != nil {
					ctx = tc.ctx(t)
				}
				dir := t.TempDir()
				dst := filepath.Join(dir, "teeup-node")
				old := []byte("the previous version")
				if existing {
					if err := os.WriteFile(dst, old, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				err := tc.fetcher.Fetch(ctx, tc.url, dst)
				if err == nil || !strings.Contains(err.Error(), tc.want) {
					t.Fatalf("Fetch = %v, want error containing %q", err, tc.want)
				}
				if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
					t.Fatalf("Fetch = %v, want errors.Is %v", err, tc.wantIs)
				}
				got, rerr := os.ReadFile(dst)
				switch {
				case existing && !bytes.Equal(got, old):
					t.Fatalf("a failed Fetch changed the existing file (%v)", rerr)
				case !existing && !errors.Is(rerr, os.ErrNotExist):
					t.Fatalf("a failed Fetch left %s (%d bytes, %v)", dst, len(got), rerr)
				}
				entries, _ := os.ReadDir(dir)
				if want := map[bool]int{false: 0, true: 1}[existing]; len(entries) != want {
					t.Fatalf("a failed Fetch left %d entries in the directory, want %d", len(entries), want)
				}
			})
		}
	}
}

func TestFetchIntoMissingDirectory(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	if err := os.WriteFile(src, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "missing", "dst")
	if err := Fetch(context.Background(), fileURL(src), dst, nil); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Fetch into a missing directory = %v, want os.ErrNotExist", err)
	}
}

func TestCtxReaderStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	r := ctxReader{ctx, strings.NewReader("abcdef")}
	buf := make([]byte, 3)
	if n, err := r.Read(buf); n != 3 || err != nil {
		t.Fatalf("Read = %d, %v", n, err)
	}
	cancel()
	if n, err := r.Read(buf); n != 0 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Read after cancel = %d, %v; want 0, context.Canceled", n, err)
	}
}
