package release

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
)

// DefaultMaxFetchSize is the largest file Fetch downloads: 512 MiB.
const DefaultMaxFetchSize = 512 << 20

// ErrTooLarge is wrapped by Fetch errors for a file above the size limit.
var ErrTooLarge = errors.New("larger than the size limit")

// Fetcher downloads release files. The zero value is ready to use.
type Fetcher struct {
	// Client makes HTTP requests; nil means a client with default settings.
	// Cancellation and deadlines come from the context passed to Fetch.
	Client *http.Client
	// MaxSize is the largest file accepted; 0 means DefaultMaxFetchSize.
	MaxSize int64
	// Mode is the permission of the written file; 0 means 0644.
	Mode os.FileMode
}

// Fetch downloads rawURL into dst with a Fetcher using client (which may be
// nil) and the default limits.
func Fetch(ctx context.Context, rawURL, dst string, client *http.Client) error {
	return Fetcher{Client: client}.Fetch(ctx, rawURL, dst)
}

// Fetch downloads an http:// or https:// URL, or copies a file:// URL, into
// dst. The file is written to a temporary name beside dst, fsynced and
// renamed, so dst is either the complete new file or untouched: a failure
// (missing source, HTTP status other than 200, a body above MaxSize, a
// cancelled context) never leaves a partial dst. Fetch does not check the
// content; pass dst to VerifyBinary or VerifyArtifact.
func (f Fetcher) Fetch(ctx context.Context, rawURL, dst string) error {
	if err := f.fetch(ctx, rawURL, dst); err != nil {
		return fmt.Errorf("fetch %s: %w", rawURL, err)
	}
	return nil
}

func (f Fetcher) fetch(ctx context.Context, rawURL, dst string) error {
	if err := validateURL(rawURL); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	maxSize := f.MaxSize
	if maxSize <= 0 {
		maxSize = DefaultMaxFetchSize
	}
	mode := f.Mode
	if mode == 0 {
		mode = 0o644
	}
	u, err := url.Parse(rawURL) // validateURL parsed it already
	if err != nil {
		return err
	}
	var (
		src  io.ReadCloser
		size int64 = -1 // announced size, -1 if unknown
	)
	switch u.Scheme {
	case "file":
		file, err := os.Open(u.Path)
		if err != nil {
			return err
		}
		st, err := file.Stat()
		if err != nil {
			file.Close()
			return err
		}
		if !st.Mode().IsRegular() {
			file.Close()
			return fmt.Errorf("%s is not a regular file", u.Path)
		}
		src, size = file, st.Size()
	default: // http, https
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
		if err != nil {
			return err
		}
		client := f.Client
		if client == nil {
			client = &http.Client{}
		}
		resp, err := client.Do(req)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return fmt.Errorf("server answered %s", resp.Status)
		}
		src, size = resp.Body, resp.ContentLength
	}
	defer src.Close()
	if size > maxSize {
		return fmt.Errorf("%d bytes: %w of %d bytes", size, ErrTooLarge, maxSize)
	}
	return writeAtomic(dst, mode, false, func(out *os.File) error {
		n, err := io.Copy(out, io.LimitReader(ctxReader{ctx, src}, maxSize+1))
		if err != nil {
			return err
		}
		if n > maxSize {
			return fmt.Errorf("more than %d bytes: %w", maxSize, ErrTooLarge)
		}
		if size >= 0 && n != size {
			return fmt.Errorf("got %d bytes, %d were announced", n, size)
		}
		return nil
	})
}

// ctxReader fails reads once its context is done, so a copy from a local
// file (which ignores contexts) stops on cancellation.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

// Read reads from the underlying reader unless the context is done.
func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
