package demo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestAwaitSize(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name     string
		readings []int64
		failAt   int // reading index whose size call fails; -1 none
		target   int64
		want     int64
		wantErr  error
		reported int
	}{
		{"already there", []int64{10}, -1, 10, 10, nil, 1},
		{"grows to the target", []int64{1, 5, 9, 12}, -1, 10, 12, nil, 4},
		{"a failed reading ends it", []int64{1, 2}, 1, 10, 0, boom, 1},
		{"never there: the context ends it", []int64{1, 1, 1}, -1, 10, 1, context.DeadlineExceeded, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			i := 0
			size := func() (int64, error) {
				if i == tc.failAt {
					return 0, boom
				}
				if i >= len(tc.readings) {
					cancel() // no more readings: end the wait
					return tc.readings[len(tc.readings)-1], nil
				}
				n := tc.readings[i]
				i++
				return n, nil
			}
			var reported int
			got, err := awaitSize(ctx, size, tc.target, time.Millisecond, func(int64) { reported++ })
			if tc.wantErr == context.DeadlineExceeded {
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("err = %v, want the context's", err)
				}
			} else if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Fatalf("size = %d, want %d", got, tc.want)
			}
			if tc.wantErr == nil && reported != tc.reported {
				t.Fatalf("progress reported %d times, want %d", reported, tc.reported)
			}
		})
	}
}

func TestSmallestDir(t *testing.T) {
	root := t.TempDir()
	a, b := filepath.Join(root, "a"), filepath.Join(root, "b")
	for dir, files := range map[string]map[string]int{
		a: {"000001.sst": 300, "sub/MANIFEST": 200},
		b: {"000002.sst": 100},
	} {
		for name, n := range files {
			p := filepath.Join(dir, name)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, make([]byte, n), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if n, err := dirBytes(a); err != nil || n != 500 {
		t.Fatalf("dirBytes(a) = %d, %v; want 500 (nested files counted)", n, err)
	}
	if n, err := smallestDir([]string{a, b}); err != nil || n != 100 {
		t.Fatalf("smallestDir = %d, %v; want 100", n, err)
	}
	if n, err := dirBytes(filepath.Join(root, "missing")); err != nil || n != 0 {
		t.Fatalf("a missing directory = %d, %v; want 0 (not created yet)", n, err)
	}
	if _, err := smallestDir(nil); err == nil {
		t.Fatal("no directory: want an error")
	}
}
