package jsonutil

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"
)

func TestDuration(t *testing.T) {
	var v struct {
		D Duration `json:"d"`
	}
	if err := json.Unmarshal([]byte(`{"d":"1.5s"}`), &v); err != nil || time.Duration(v.D) != 1500*time.Millisecond {
		t.Fatalf("decode = %v, %v", v.D, err)
	}
	out, err := json.Marshal(v)
	if err != nil || string(out) != `{"d":"1.5s"}` {
		t.Fatalf("encode = %s, %v", out, err)
	}
	for _, bad := range []string{`{"d":"-1s"}`, `{"d":"soon"}`, `{"d":""}`, `{"d":12}`} {
		if err := json.Unmarshal([]byte(bad), &v); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestLoadStrictAndResolve(t *testing.T) {
	dir := t.TempDir()
	p := dir + "/c.json"
	var v struct {
		A string `json:"a"`
	}
	for _, tc := range []struct{ body, want string }{
		{`{"a":"x","b":1}`, "unknown field"},
		{`{"a":"x"} {"a":"y"}`, "trailing data"},
		{`{`, "unexpected EOF"},
	} {
		if err := os.WriteFile(p, []byte(tc.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := LoadStrict(p, &v); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("LoadStrict(%s) = %v, want %q", tc.body, err, tc.want)
		}
	}
	if err := os.WriteFile(p, []byte(`{"a":"rel/x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := LoadStrict(p, &v); err != nil {
		t.Fatal(err)
	}
	abs, empty := "/abs", ""
	ResolvePaths(p, &v.A, &abs, &empty)
	if v.A != dir+"/rel/x" || abs != "/abs" || empty != "" {
		t.Fatalf("resolved %q %q %q", v.A, abs, empty)
	}
}
