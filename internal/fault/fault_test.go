package fault

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	s, err := Parse(" crash:a , fail:b=x,,")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Has("crash:a") || !s.Has("fail:b") || s.Value("fail:b") != "x" || s.Has("c") || s.Empty() {
		t.Fatalf("parsed %+v", s)
	}
	if _, err := Parse("=v"); err == nil {
		t.Fatal("empty point name accepted")
	}
	if e, _ := Parse(""); !e.Empty() {
		t.Fatal("empty spec not empty")
	}
}

func TestErrorAndOnce(t *testing.T) {
	t.Setenv(EnvVar, "fail:migration")
	t.Setenv(OnceDirEnvVar, t.TempDir())
	s, err := FromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Error("other"); err != nil {
		t.Fatalf("unrelated point fired: %v", err)
	}
	err = s.Error("migration")
	if err == nil || !strings.Contains(err.Error(), "migration") {
		t.Fatalf("first Error = %v", err)
	}
	// A second process (same environment) does not fire it again.
	s2, _ := FromEnv()
	if err := s2.Error("migration"); err != nil {
		t.Fatalf("one-shot fault fired twice: %v", err)
	}
}
