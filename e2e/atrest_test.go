package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/teeup/teeup/devnet"
	"github.com/teeup/teeup/internal/leakscan"
	"github.com/teeup/teeup/layout"
	"github.com/teeup/teeup/ledger"
	"github.com/teeup/teeup/snapshot"
)

// Distinctive amounts of TestNoUserDataAtRest.
const (
	leakFunding = 93_939_393 // user-1 funds a fresh sender
	leakAmount  = 7_777_777  // the fresh sender pays a fresh recipient
)

// TestNoUserDataAtRest makes payments between fresh addresses with
// distinctive amounts on an agent-managed devnet, waits until every node
// applied them, takes a ledger snapshot on every host, and scans every file
// of every host (data directory with the Pebble sstables, write-ahead logs
// and manifests, agent directory, snapshots, distribution output, logs):
// none holds the addresses (raw, hex, base64) or the amounts (decimal
// text, 8-byte big-endian), while a control needle stored in plaintext by
// design (a node key) is found on every host.
func TestNoUserDataAtRest(t *testing.T) {
	tn := startNetWith(t, devnet.UpOptions{Nodes: 3})
	ctx := testCtx(t, 3*time.Minute)
	tn.waitCurrent(ctx)

	fresh := func() ed25519.PrivateKey {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	sender, recipient := fresh(), fresh()
	addr := func(k ed25519.PrivateKey) ledger.Address { return addresses([]ed25519.PrivateKey{k})[0] }
	funder := tn.key("user-1")
	nonce := tn.balances(ctx, 1, []ledger.Address{addr(funder)})[addr(funder)].Nonce
	var last uint64
	for i, tx := range []*ledger.Tx{
		ledger.NewPayment(tn.net.ChainID, funder, addr(sender), leakFunding, nonce+1),
		ledger.NewPayment(tn.net.ChainID, sender, addr(recipient), leakAmount, 1),
	} {
		rec, err := tn.clients[i%len(tn.clients)].Submit(ctx, tx.Encode())
		if err != nil {
			t.Fatalf("payment %d: %v", i, err)
		}
		if rec.Status != ledger.StateCommitted {
			t.Fatalf("payment %d: %+v", i, rec)
		}
		last = rec.Height
	}
	tn.waitHeight(ctx, last)
	for id := 1; id <= len(tn.net.Hosts); id++ {
		got := tn.balances(ctx, id, []ledger.Address{addr(recipient)})[addr(recipient)]
		if got.Balance != leakAmount {
			t.Fatalf("node %d: recipient balance %d, want %d", id, got.Balance, leakAmount)
		}
	}
	// A snapshot on every host, as a flag day takes.
	for i := range tn.net.Hosts {
		h := &tn.net.Hosts[i]
		admin := tn.admins[i]
		_, err := snapshot.Create(ctx, snapshot.CreateOptions{
			Root: layout.Agent(h.AgentDir).Snapshots(), Name: "leakscan",
			Checkpoint: func(dst string) error { return admin.Checkpoint(ctx, dst) },
			StateFile:  h.DistState, AllowMissingState: true,
		})
		if err != nil {
			t.Fatalf("%s: snapshot: %v", h.Name, err)
		}
	}

	var needles []leakscan.Needle
	for name, k := range map[string]ed25519.PrivateKey{"sender": sender, "recipient": recipient} {
		a := addr(k)
		needles = append(needles,
			leakscan.Needle{Name: name, Value: a[:]},
			// An sstable key shares its first bytes with the key before it.
			leakscan.Needle{Name: name + " tail", Value: a[8:]})
	}
	for _, v := range []uint64{leakFunding, leakAmount} {
		needles = append(needles,
			leakscan.Needle{Name: "amount " + strconv.FormatUint(v, 10), Value: []byte(strconv.FormatUint(v, 10))},
			leakscan.Needle{Name: fmt.Sprintf("amount %d (u64)", v), Value: binary.BigEndian.AppendUint64(nil, v)})
	}
	// The control: node 1's identity key is a network identity that every
	// ledger keeps in plaintext (n/ records), so the scan must find it on
	// every host.
	const control = "node 1 key (control, plaintext by design)"
	st, err := tn.admins[0].Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	nodeKey, err := ledger.ParseAddress(st.NodeKey)
	if err != nil {
		t.Fatalf("node 1 key %q: %v", st.NodeKey, err)
	}
	needles = append(needles, leakscan.Needle{Name: control, Value: nodeKey[:]})
	scan := func(when string) {
		t.Helper()
		var dirs []string
		for _, h := range tn.net.Hosts {
			dirs = append(dirs, h.Dir)
			for _, d := range []string{h.DataDir, h.AgentDir, h.LogDir, h.DistDir} {
				if rel, err := filepath.Rel(h.Dir, d); err != nil || strings.HasPrefix(rel, "..") {
					dirs = append(dirs, d) // not inside the host directory
				}
			}
		}
		files, err := leakscan.Files(dirs)
		if err != nil {
			t.Fatal(err)
		}
		hits, err := leakscan.Scan(context.Background(), dirs, needles)
		if err != nil {
			t.Fatal(err)
		}
		controls := 0
		for _, h := range hits {
			if h.Needle == control {
				controls++
				continue
			}
			t.Errorf("%s: %s", when, h)
		}
		if controls < len(tn.net.Hosts) {
			t.Errorf("%s: the control needle was found %d times, want one per host at least: the scan proves nothing", when, controls)
		}
		t.Logf("%s: scanned %d files, %d hits (%d of them the control)", when, files, len(hits), controls)
	}
	scan("running")
	// Stopped, the nodes have flushed what they held in memory.
	if err := devnet.Down(ctx, tn.net); err != nil {
		t.Fatalf("devnet down: %v", err)
	}
	scan("stopped")
}
