package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/teeup/teeup/internal/fsutil"
	"github.com/teeup/teeup/nodeapi"
)

// ingressState is whether client ingress is open. It is persisted so that
// a node restarted during an upgrade keeps ingress closed until an
// operator reopens it.
type ingressState struct {
	path string
	mu   sync.Mutex
	st   ingressFile
}

type ingressFile struct {
	Open   bool      `json:"open"`
	Reason string    `json:"reason,omitempty"`
	Since  time.Time `json:"since"`
}

func loadIngress(path string) (*ingressState, error) {
	s := &ingressState{path: path, st: ingressFile{Open: true, Since: time.Now()}}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read ingress state: %w", err)
	}
	if err := json.Unmarshal(raw, &s.st); err != nil {
		return nil, fmt.Errorf("ingress state %s: %w", path, err)
	}
	return s, nil
}

func (s *ingressState) isOpen() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Open
}

func (s *ingressState) set(open bool, reason string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Open == open && s.st.Reason == reason {
		return nil
	}
	next := ingressFile{Open: open, Reason: reason, Since: time.Now()}
	raw, err := json.Marshal(next)
	if err != nil {
		return fmt.Errorf("ingress state: %w", err)
	}
	if err := fsutil.WriteFileAtomic(s.path, raw, 0o600); err != nil {
		return fmt.Errorf("ingress state: %w", err)
	}
	s.st = next
	return nil
}

func (s *ingressState) String() string { return string(s.state()) }

func (s *ingressState) state() nodeapi.IngressState {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st.Open {
		return nodeapi.IngressOpen
	}
	return nodeapi.IngressClosed
}

func (s *ingressState) reason() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.st.Reason
}
