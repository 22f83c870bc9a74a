package handover

import (
	"bytes"
	"context"
	"net"
	"testing"
)

// BenchmarkExchange measures the handover without process start: one leg
// (old node → agent) with the state machines in memory, both legs (old node
// → agent → new node) in memory, and both legs over net.Pipe with Serve and
// Fetch. Each iteration builds fresh requesters (which verify their own
// enclave IDs) and, for the second leg, the agent's provider, as a real
// upgrade does.
func BenchmarkExchange(b *testing.B) {
	f := newFixture(b)
	check := func(b *testing.B, got []byte, err error) {
		b.Helper()
		if err != nil {
			b.Fatal(err)
		}
		if !bytes.Equal(got, f.secret) {
			b.Fatalf("secret %q", got)
		}
	}
	b.Run("one-leg", func(b *testing.B) {
		p := f.oldNodeProvider(b)
		b.ReportAllocs()
		for b.Loop() {
			got, err := exchange(p, f.agentRequester(b))
			check(b, got, err)
		}
	})
	b.Run("two-legs", func(b *testing.B) {
		old := f.oldNodeProvider(b)
		b.ReportAllocs()
		for b.Loop() {
			agentGot, err := exchange(old, f.agentRequester(b))
			check(b, agentGot, err)
			got, err := exchange(f.agentProvider(b, agentGot), f.newNodeRequester(b))
			check(b, got, err)
		}
	})
	b.Run("two-legs-pipe", func(b *testing.B) {
		old := f.oldNodeProvider(b)
		leg := func(p *Provider, r *Requester) ([]byte, error) {
			pc, rc := net.Pipe()
			defer pc.Close()
			defer rc.Close()
			done := make(chan error, 1)
			go func() { done <- Serve(context.Background(), pc, p) }()
			got, err := Fetch(context.Background(), rc, r)
			if serr := <-done; serr != nil && err == nil {
				err = serr
			}
			return got, err
		}
		b.ReportAllocs()
		for b.Loop() {
			agentGot, err := leg(old, f.agentRequester(b))
			check(b, agentGot, err)
			got, err := leg(f.agentProvider(b, agentGot), f.newNodeRequester(b))
			check(b, got, err)
		}
	})
}
