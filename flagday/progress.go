package flagday

import (
	"bytes"
	"fmt"
	"io"
	"sort"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/teeup/teeup/agentapi"
	"github.com/teeup/teeup/nodeapi"
)

// progressTable prints a node × state table whenever it changes.
type progressTable struct {
	w     io.Writer
	hosts []Host
	start time.Time
	mu    sync.Mutex
	last  string
}

func newProgressTable(w io.Writer, hosts []Host) *progressTable {
	return &progressTable{w: w, hosts: hosts, start: time.Now()}
}

// render prints the table if its content changed since the last print.
func (p *progressTable) render(sts map[uint64]*nodeapi.Status, agents map[uint64]*agentapi.Status, activation uint64) {
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "   NODE\tHEIGHT\tTARGET\tHALTED\tINGRESS\tPENDING\tMRENCLAVE\tAGENT PHASE\n")
	ids := make([]uint64, 0, len(p.hosts))
	for _, h := range p.hosts {
		ids = append(ids, h.ID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		phase := "-"
		if a, ok := agents[id]; ok && a.Upgrade != nil {
			phase = string(a.Upgrade.Phase)
		}
		st, ok := sts[id]
		if !ok {
			fmt.Fprintf(tw, "   %d\t-\t%d\t-\t-\t-\tdown\t%s\n", id, activation, phase)
			continue
		}
		fmt.Fprintf(tw, "   %d\t%d\t%d\t%t\t%s\t%d\t%s\t%s\n", id, st.Height, activation, st.Halted, st.Ingress, st.Pending, st.MREnclave.Short(), phase)
	}
	tw.Flush()
	s := b.String()
	p.mu.Lock()
	defer p.mu.Unlock()
	if s == p.last {
		return
	}
	p.last = s
	fmt.Fprintf(p.w, "   [%6.1fs]\n%s", time.Since(p.start).Seconds(), s)
}

// renderMatrix prints the attestation matrix.
func (p *progressTable) renderMatrix(m map[uint64][]nodeapi.PeerAttestation) {
	ids := make([]uint64, 0, len(p.hosts))
	for _, h := range p.hosts {
		ids = append(ids, h.ID)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 2, 4, 2, ' ', 0)
	fmt.Fprint(tw, "   attests →")
	for _, id := range ids {
		fmt.Fprintf(tw, "\t%d", id)
	}
	fmt.Fprintln(tw)
	for _, from := range ids {
		fmt.Fprintf(tw, "   %d", from)
		for _, to := range ids {
			cell := "·"
			if from != to {
				cell = "?"
				for _, pa := range m[from] {
					if pa.To == to {
						if pa.OK {
							cell = "ok " + pa.MREnclave.Short()[:6]
						} else {
							cell = "FAIL"
						}
					}
				}
			}
			fmt.Fprintf(tw, "\t%s", cell)
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprint(p.w, b.String())
}
