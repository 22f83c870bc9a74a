package statetransfer

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/internal/wire"
)

// The stream, after the transport's snapshot header:
//
//	summary  'S' len:u32 {files:u32, bytes:u64}
//	file     'F' len:u32 {name:string, size:u64}, then size raw bytes
//	...
//	end      'E' len:u32 {files:u32, bytes:u64}
//
// and the receiver's answer, one result frame:
//
//	result   'R' len:u32 {code:u8, message:string}
//
// File contents are not checksummed: the stream runs inside TLS, whose
// AEAD already authenticates every byte; the end record guards against a
// truncated stream, and the receiver verifies the ledger itself.
const (
	recSummary byte = 'S'
	recFile    byte = 'F'
	recEnd     byte = 'E'
	recResult  byte = 'R'

	maxRecord  = 4 << 10
	maxNameLen = 255
	copyBuffer = 1 << 20
)

// Limits bound what a receiver accepts.
type Limits struct {
	// MaxFiles is the largest number of files (default 100,000).
	MaxFiles int
	// MaxBytes is the largest total size (default 1 TiB).
	MaxBytes int64
}

func (l Limits) withDefaults() Limits {
	if l.MaxFiles <= 0 {
		l.MaxFiles = 100_000
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 40
	}
	return l
}

// Stats describes a transferred directory.
type Stats struct {
	Files int
	Bytes int64
}

// Progress is called as bytes move: done of total bytes.
type Progress func(done, total int64)

// ErrMalformed is wrapped by errors about a stream that breaks the
// protocol or the limits.
var ErrMalformed = errors.New("malformed state transfer stream")

func writeRecord(w io.Writer, typ byte, body []byte) error {
	var hdr [5]byte
	hdr[0] = typ
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
	if _, err := w.Write(hdr[:]); err != nil {
		return err
	}
	_, err := w.Write(body)
	return err
}

func readRecord(r io.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxRecord {
		return 0, nil, fmt.Errorf("%w: record of %d bytes exceeds %d", ErrMalformed, n, maxRecord)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, err
	}
	return hdr[0], body, nil
}

func encodeCounts(files int, bytes int64) []byte {
	e := wire.NewEncoder(12)
	e.U32(uint32(files))
	e.U64(uint64(bytes))
	return e.Bytes()
}

func decodeCounts(what string, b []byte) (Stats, error) {
	d := wire.NewDecoder(what, b)
	files := d.U32("files")
	n := d.U64("bytes")
	if err := d.Finish(); err != nil {
		return Stats{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if n > 1<<62 {
		return Stats{}, fmt.Errorf("%w: %s: %d bytes", ErrMalformed, what, n)
	}
	return Stats{Files: int(files), Bytes: int64(n)}, nil
}

type fileHeader struct {
	name string
	size int64
}

func encodeFileHeader(h fileHeader) []byte {
	e := wire.NewEncoder(16 + len(h.name))
	e.String(h.name)
	e.U64(uint64(h.size))
	return e.Bytes()
}

// decodeFileHeader parses a file record's body.
func decodeFileHeader(b []byte) (fileHeader, error) {
	d := wire.NewDecoder("file header", b)
	h := fileHeader{name: d.String("name", maxNameLen)}
	size := d.U64("size")
	if err := d.Finish(); err != nil {
		return fileHeader{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if size > 1<<62 {
		return fileHeader{}, fmt.Errorf("%w: file %q: %d bytes", ErrMalformed, h.name, size)
	}
	h.size = int64(size)
	if err := ValidName(h.name); err != nil {
		return fileHeader{}, err
	}
	return h, nil
}

// ValidName reports whether name may be a file of a transferred directory:
// a plain file name of letters, digits, '.', '_' and '-', not "." or "..".
func ValidName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxNameLen {
		return fmt.Errorf("%w: bad file name %q", ErrMalformed, name)
	}
	for _, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: bad file name %q", ErrMalformed, name)
		}
	}
	return nil
}

// Scan lists the regular files of dir (no subdirectories are allowed) and
// their total size, in name order.
func Scan(dir string) ([]os.DirEntry, Stats, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, Stats{}, fmt.Errorf("scan %s: %w", dir, err)
	}
	sort.Slice(ents, func(i, j int) bool { return ents[i].Name() < ents[j].Name() })
	var st Stats
	for _, e := range ents {
		if !e.Type().IsRegular() {
			return nil, Stats{}, fmt.Errorf("scan %s: %s is not a regular file", dir, e.Name())
		}
		if err := ValidName(e.Name()); err != nil {
			return nil, Stats{}, fmt.Errorf("scan %s: %w", dir, err)
		}
		info, err := e.Info()
		if err != nil {
			return nil, Stats{}, fmt.Errorf("scan %s: %w", dir, err)
		}
		st.Files++
		st.Bytes += info.Size()
	}
	return ents, st, nil
}

// SendDir streams every file of dir to w. progress may be nil.
func SendDir(ctx context.Context, w io.Writer, dir string, progress Progress) (Stats, error) {
	ents, total, err := Scan(dir)
	if err != nil {
		return Stats{}, err
	}
	bw := bufio.NewWriterSize(w, copyBuffer)
	if err := writeRecord(bw, recSummary, encodeCounts(total.Files, total.Bytes)); err != nil {
		return Stats{}, fmt.Errorf("send state: %w", err)
	}
	var sent Stats
	buf := make([]byte, copyBuffer)
	for _, e := range ents {
		if err := ctx.Err(); err != nil {
			return sent, fmt.Errorf("send state: %w", err)
		}
		n, err := sendFile(ctx, bw, filepath.Join(dir, e.Name()), e.Name(), buf, func(k int64) {
			if progress != nil {
				progress(sent.Bytes+k, total.Bytes)
			}
		})
		if err != nil {
			return sent, fmt.Errorf("send state: %s: %w", e.Name(), err)
		}
		sent.Files++
		sent.Bytes += n
	}
	if sent != total {
		return sent, fmt.Errorf("send state: %s changed while it was sent", dir)
	}
	if err := writeRecord(bw, recEnd, encodeCounts(sent.Files, sent.Bytes)); err != nil {
		return sent, fmt.Errorf("send state: %w", err)
	}
	if err := bw.Flush(); err != nil {
		return sent, fmt.Errorf("send state: %w", err)
	}
	return sent, nil
}

func sendFile(ctx context.Context, w io.Writer, path, name string, buf []byte, progress func(int64)) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return 0, err
	}
	size := info.Size()
	if err := writeRecord(w, recFile, encodeFileHeader(fileHeader{name: name, size: size})); err != nil {
		return 0, err
	}
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			return done, err
		}
		k := min(int64(len(buf)), size-done)
		if _, err := io.ReadFull(f, buf[:k]); err != nil {
			return done, fmt.Errorf("read: %w (the file shrank while it was sent)", err)
		}
		if _, err := w.Write(buf[:k]); err != nil {
			return done, err
		}
		done += k
		progress(done)
	}
	return done, nil
}

// ReceiveDir reads a stream sent by SendDir into dir, which must not exist:
// it is created 0700, every file is written 0600 and synced, and so is the
// directory. On error dir may hold a partial copy; the caller removes it.
func ReceiveDir(ctx context.Context, r io.Reader, dir string, lim Limits, progress Progress) (Stats, error) {
	lim = lim.withDefaults()
	br := bufio.NewReaderSize(r, copyBuffer)
	typ, body, err := readRecord(br)
	if err != nil {
		return Stats{}, fmt.Errorf("receive state: summary: %w", err)
	}
	if typ != recSummary {
		return Stats{}, fmt.Errorf("%w: expected the summary, got record %q", ErrMalformed, typ)
	}
	total, err := decodeCounts("summary", body)
	if err != nil {
		return Stats{}, err
	}
	if total.Files > lim.MaxFiles || total.Bytes > lim.MaxBytes {
		return Stats{}, fmt.Errorf("%w: %d files, %d bytes exceed the limits (%d files, %d bytes)",
			ErrMalformed, total.Files, total.Bytes, lim.MaxFiles, lim.MaxBytes)
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return Stats{}, fmt.Errorf("receive state: %w", err)
	}
	var got Stats
	seen := make(map[string]bool)
	buf := make([]byte, copyBuffer)
	for {
		if err := ctx.Err(); err != nil {
			return got, fmt.Errorf("receive state: %w", err)
		}
		typ, body, err := readRecord(br)
		if err != nil {
			return got, fmt.Errorf("receive state: %w", err)
		}
		switch typ {
		case recFile:
			h, err := decodeFileHeader(body)
			if err != nil {
				return got, err
			}
			if seen[h.name] {
				return got, fmt.Errorf("%w: file %q sent twice", ErrMalformed, h.name)
			}
			seen[h.name] = true
			if got.Files+1 > total.Files || got.Bytes+h.size > total.Bytes {
				return got, fmt.Errorf("%w: more data than the summary announced", ErrMalformed)
			}
			if err := receiveFile(ctx, br, filepath.Join(dir, h.name), h.size, buf, func(k int64) {
				if progress != nil {
					progress(got.Bytes+k, total.Bytes)
				}
			}); err != nil {
				return got, fmt.Errorf("receive state: %s: %w", h.name, err)
			}
			got.Files++
			got.Bytes += h.size
		case recEnd:
			end, err := decodeCounts("end", body)
			if err != nil {
				return got, err
			}
			if end != got || got != total {
				return got, fmt.Errorf("%w: stream ended after %d files, %d bytes; announced %d files, %d bytes",
					ErrMalformed, got.Files, got.Bytes, total.Files, total.Bytes)
			}
			if err := fsutil.SyncDir(dir); err != nil {
				return got, fmt.Errorf("receive state: %w", err)
			}
			return got, nil
		default:
			return got, fmt.Errorf("%w: unexpected record %q", ErrMalformed, typ)
		}
	}
}

func receiveFile(ctx context.Context, r io.Reader, path string, size int64, buf []byte, progress func(int64)) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	var done int64
	for done < size {
		if err := ctx.Err(); err != nil {
			f.Close()
			return err
		}
		k := min(int64(len(buf)), size-done)
		if _, err := io.ReadFull(r, buf[:k]); err != nil {
			f.Close()
			return fmt.Errorf("stream cut after %d of %d bytes: %w", done, size, err)
		}
		if _, err := f.Write(buf[:k]); err != nil {
			f.Close()
			return err
		}
		done += k
		progress(done)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ResultCode is a receiver's answer to a transfer.
type ResultCode uint8

// Result codes.
const (
	// ResultInstalled: the state was received, verified and staged; raft
	// will install it.
	ResultInstalled ResultCode = 1
	// ResultNotNeeded: the receiver already holds state at or past the
	// snapshot's index; the sender should resume replication from the log.
	ResultNotNeeded ResultCode = 2
	// ResultRefused: the receiver refused the snapshot (verification failed,
	// wrong chain or membership, or it is busy installing another one).
	ResultRefused ResultCode = 3
)

// String names the code.
func (c ResultCode) String() string {
	switch c {
	case ResultInstalled:
		return "installed"
	case ResultNotNeeded:
		return "not needed"
	case ResultRefused:
		return "refused"
	default:
		return fmt.Sprintf("result %d", uint8(c))
	}
}

// Result is a receiver's answer.
type Result struct {
	Code    ResultCode
	Message string
}

// WriteResult sends the receiver's answer.
func WriteResult(w io.Writer, res Result) error {
	e := wire.NewEncoder(8 + len(res.Message))
	e.U8(uint8(res.Code))
	msg := res.Message
	if len(msg) > 1024 {
		msg = msg[:1024]
	}
	e.String(msg)
	return writeRecord(w, recResult, e.Bytes())
}

// ReadResult reads the receiver's answer.
func ReadResult(r io.Reader) (Result, error) {
	typ, body, err := readRecord(r)
	if err != nil {
		return Result{}, fmt.Errorf("read state transfer result: %w", err)
	}
	if typ != recResult {
		return Result{}, fmt.Errorf("%w: expected a result, got record %q", ErrMalformed, typ)
	}
	return decodeResult(body)
}

func decodeResult(b []byte) (Result, error) {
	d := wire.NewDecoder("result", b)
	code := ResultCode(d.U8("code"))
	msg := d.String("message", 1024)
	if err := d.Finish(); err != nil {
		return Result{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch code {
	case ResultInstalled, ResultNotNeeded, ResultRefused:
	default:
		return Result{}, fmt.Errorf("%w: unknown result code %d", ErrMalformed, code)
	}
	return Result{Code: code, Message: msg}, nil
}
