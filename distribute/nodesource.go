package distribute

import (
	"context"

	"github.com/teeup/teeup/nodeapi"
)

// blockReader is what NodeSource needs of a node API client; both the
// attested client API and the local admin API provide it.
type blockReader interface {
	Head(ctx context.Context) (*nodeapi.Head, error)
	RawBlock(ctx context.Context, height uint64) ([]byte, error)
}

// NodeSource reads finalized blocks from a teeup node.
type NodeSource struct{ r blockReader }

// NewNodeSource returns a Source reading from a node API client.
func NewNodeSource(r blockReader) *NodeSource { return &NodeSource{r: r} }

// Head implements Source.
func (s *NodeSource) Head(ctx context.Context) (uint64, error) {
	h, err := s.r.Head(ctx)
	if err != nil {
		return 0, err
	}
	return h.Height, nil
}

// Block implements Source.
func (s *NodeSource) Block(ctx context.Context, height uint64) ([]byte, error) {
	return s.r.RawBlock(ctx, height)
}
