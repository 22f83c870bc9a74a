package remoteadmin

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// FuzzParseOperatorCertificate: a client certificate is untrusted bytes;
// parsing never panics, and what it accepts is an ed25519 key's
// certificate self-signed by that key.
func FuzzParseOperatorCertificate(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	c, err := OperatorCertificate(key)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(c.Certificate[0])
	f.Add([]byte{0x30, 0x82, 0x01})
	f.Fuzz(func(t *testing.T, der []byte) {
		k, err := ParseOperatorCertificate(der)
		if err != nil {
			return
		}
		if k.IsZero() {
			t.Fatal("accepted a certificate of the zero key")
		}
	})
}
