package remoteadmin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
)

// HeaderNodeID carries a node id: in a request, the node the client
// addressed (a server for another node refuses it); in every response,
// the node that answered.
const HeaderNodeID = "Teeup-Node-Id"

// Error codes of refusals, in the APIs' error body {"code", "error"}.
const (
	CodeUnauthenticated = "unauthenticated"
	CodeForbidden       = "forbidden"
	CodeWrongNode       = "wrong_node"
	CodeUnavailable     = "unavailable"
)

// Errors of refused requests (the API clients map the codes to them).
var (
	// ErrForbidden: the operator key may not make this request on this
	// host (a write by another host's operator, or a stranger).
	ErrForbidden = errors.New("the operator key is not authorised for this request on this host")
	// ErrUnauthenticated: the request came without an operator key.
	ErrUnauthenticated = errors.New("the request carries no operator key")
)

// CodeError returns the sentinel an error code stands for, nil if none.
func CodeError(code string) error {
	switch code {
	case CodeForbidden:
		return ErrForbidden
	case CodeUnauthenticated:
		return ErrUnauthenticated
	case CodeWrongNode:
		return ErrWrongNode
	}
	return nil
}

// apiError is the error body both admin APIs use.
type apiError struct {
	Code    string `json:"code"`
	Message string `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Code: code, Message: msg})
}

// CheckNodeID wraps an admin API (on any transport) so that every
// response names the node that answers, and a request that names another
// node is refused (421, CodeWrongNode) before it does anything.
func CheckNodeID(nodeID uint64, next http.Handler) http.Handler {
	id := strconv.FormatUint(nodeID, 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(HeaderNodeID, id)
		if want := r.Header.Get(HeaderNodeID); want != "" && want != id {
			writeError(w, http.StatusMisdirectedRequest, CodeWrongNode,
				fmt.Sprintf("%v: this is node %s, the request is for node %s", ErrWrongNode, id, want))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HandlerOptions configure Handler.
type HandlerOptions struct {
	// Role and NodeID say what this server is (for messages and
	// CheckNodeID).
	Role   Role
	NodeID uint64
	// Required is the access each request needs.
	Required Requirement
	// Policy returns who may do what, now (it is asked per request, so a
	// change on chain takes effect at once).
	Policy func(ctx context.Context) (Policy, error)
	// Log receives refusals and writes (audit).
	Log *slog.Logger
}

// Handler wraps an admin API for the remote listener: CheckNodeID, then
// the client's operator key (from its TLS certificate) must have the
// access the request needs under the policy in force, otherwise the
// request is refused — 401 without a key, 403 without the access, 503 if
// the policy cannot be read — before next sees it.
func Handler(next http.Handler, o HandlerOptions) http.Handler {
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			writeError(w, http.StatusUnauthorized, CodeUnauthenticated, ErrUnauthenticated.Error()+": the remote admin API needs mutual TLS")
			return
		}
		key, err := peerKey(r.TLS.PeerCertificates)
		if err != nil {
			writeError(w, http.StatusUnauthorized, CodeUnauthenticated, fmt.Sprintf("%v: %v", ErrUnauthenticated, err))
			return
		}
		need := o.Required(r)
		p, err := o.Policy(r.Context())
		if err != nil {
			log.Warn("remote admin: cannot read who may do what", "err", err, "key", key.String(), "method", r.Method, "path", r.URL.Path)
			writeError(w, http.StatusServiceUnavailable, CodeUnavailable, "cannot tell whether the operator key is authorised: "+err.Error())
			return
		}
		have := p.AccessOf(key)
		if have < need {
			log.Warn("remote admin request refused", "key", key.String(), "method", r.Method, "path", r.URL.Path, "needs", need.String(), "has", have.String(), "remote", r.RemoteAddr)
			writeError(w, http.StatusForbidden, CodeForbidden, refusal(o, key, need, have))
			return
		}
		if need == AccessWrite {
			log.Info("remote admin write", "key", key.String(), "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		}
		next.ServeHTTP(w, r)
	})
	return CheckNodeID(o.NodeID, inner)
}

// refusal explains a 403.
func refusal(o HandlerOptions, key Key, need, have Access) string {
	who := fmt.Sprintf("operator key %s", key.Short())
	switch {
	case have == AccessNone:
		return fmt.Sprintf("%v: %s is neither an operator of %s %d nor a member of the Node Operators Group or an operator of a network member", ErrForbidden, who, o.Role, o.NodeID)
	case need == AccessWrite:
		return fmt.Sprintf("%v: %s may read but not write on %s %d: only the host's own operators write", ErrForbidden, who, o.Role, o.NodeID)
	default:
		return fmt.Sprintf("%v: %s has %s access, the request needs %s", ErrForbidden, who, have, need)
	}
}
