package devnet

import "testing"

func TestPortReserverNeverRepeats(t *testing.T) {
	var r portReserver
	seen := map[string]bool{}
	for i := 0; i < 64; i++ {
		a, err := r.next()
		if err != nil {
			t.Fatal(err)
		}
		if seen[a] {
			t.Fatalf("address %s handed out twice", a)
		}
		seen[a] = true
	}
	r.release()
	if len(r.held) != 0 {
		t.Fatal("release kept listeners")
	}
	r.release() // idempotent
}
