package httplimit

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"testing"
	"time"
)

// BenchmarkIdleTLSConnectionMemory measures what an idle keep-alive TLS
// connection costs (server and client side together, in one process): n
// connections each complete one request and stay open, and the heap growth
// is divided by n. It backs the memory bound the connection limits give.
func BenchmarkIdleTLSConnectionMemory(b *testing.B) {
	const n = 500
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bench"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		b.Fatal(err)
	}
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	l, err := New(Config{MaxConns: 2 * n, MaxConnsPerSource: 2 * n, Rate: -1})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := l.Server(okHandler)
	go srv.Serve(tls.NewListener(l.Listener(ln), &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}}))
	defer srv.Close()
	cli := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	for b.Loop() {
		before := memory()
		conns := make([]*tls.Conn, 0, n)
		for range n {
			c, err := tls.Dial("tcp", ln.Addr().String(), cli)
			if err != nil {
				b.Fatal(err)
			}
			fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				b.Fatal(err)
			}
			resp.Body.Close()
			conns = append(conns, c)
		}
		if st := l.Stats(); st.Open != n {
			b.Fatalf("%d open connections, want %d", st.Open, n)
		}
		grown := float64(memory()) - float64(before)
		b.ReportMetric(grown/n/1024, "KiB/conn")
		for _, c := range conns {
			c.Close()
		}
		for l.Stats().Open != 0 {
			time.Sleep(time.Millisecond)
		}
	}
}
