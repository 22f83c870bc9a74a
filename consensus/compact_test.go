package consensus

import "testing"

func TestCompactIndex(t *testing.T) {
	same := func(n, size int) []int {
		s := make([]int, n)
		for i := range s {
			s[i] = size
		}
		return s
	}
	const mb = 1 << 20
	cases := []struct {
		name        string
		first       uint64
		sizes       []int
		every, keep uint64
		maxBytes    int
		want        uint64
	}{
		{name: "empty log", first: 1, every: 8, keep: 2, maxBytes: 64 * mb, want: 0},
		{name: "below both bounds", first: 1, sizes: same(7, 100), every: 8, keep: 2, maxBytes: 64 * mb, want: 0},
		{name: "count reached: keep the newest keep", first: 1, sizes: same(8, 100), every: 8, keep: 2, maxBytes: 64 * mb, want: 6},
		{name: "count reached, log starting later", first: 101, sizes: same(8, 100), every: 8, keep: 2, maxBytes: 64 * mb, want: 106},
		{name: "bytes reached before the count", first: 1, sizes: same(64, mb), every: 4096, keep: 1024, maxBytes: 64 * mb, want: 48},
		{name: "bytes reached, big last entry: compact everything applied", first: 1, sizes: append(same(3, mb), 70*mb), every: 4096, keep: 1024, maxBytes: 64 * mb, want: 4},
		{name: "count reached, keep's entries small", first: 1, sizes: same(16, 10), every: 16, keep: 4, maxBytes: 64 * mb, want: 12},
		{name: "keep covers the whole log", first: 1, sizes: same(8, 100), every: 8, keep: 8, maxBytes: 64 * mb, want: 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := compactIndex(tc.first, tc.sizes, tc.every, tc.keep, tc.maxBytes)
			if got != tc.want {
				t.Fatalf("compactIndex = %d, want %d", got, tc.want)
			}
			if got == 0 {
				return
			}
			// What stays (entries after got) is at most keep entries and
			// at most a quarter of maxBytes.
			kept, bytes := uint64(0), 0
			for i, s := range tc.sizes {
				if tc.first+uint64(i) > got {
					kept++
					bytes += s
				}
			}
			if kept > tc.keep || bytes > tc.maxBytes/4 {
				t.Fatalf("keeps %d entries of %d bytes; bounds %d entries, %d bytes", kept, bytes, tc.keep, tc.maxBytes/4)
			}
		})
	}
}

// TestRequestCompaction: a requested compaction runs on the next tick and
// keeps the newest entries asked for, on the node that asked only; the
// cluster goes on committing.
func TestRequestCompaction(t *testing.T) {
	c, _, _ := startCluster(t, 3, 0)
	c.commitAll("a", 30, 1, 2, 3)
	n1 := c.nodes[1]
	before := c.nodes[2].rf().FirstIndex()
	applied := n1.rf().AppliedIndex()
	n1.rf().RequestCompaction(4)
	waitFor(t, "node 1 to compact on request", func() bool { return n1.rf().FirstIndex() > before })
	if got, want := n1.rf().FirstIndex(), applied-4+1; got < want || got > n1.rf().AppliedIndex()-3 {
		t.Fatalf("first index %d after a request keeping 4 of %d applied entries, want %d", got, applied, want)
	}
	if c.nodes[2].rf().FirstIndex() != before {
		t.Fatal("another node compacted")
	}
	c.commitAll("b", 5, 1, 2, 3)
	c.sameOrder(1, 2, 3)
}
