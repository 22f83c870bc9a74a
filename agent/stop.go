package agent

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// How an agent stops. The cause of the context Run serves under decides
// what happens to its children (the node and distribution):
//
//   - SIGTERM or SIGINT (or a context cancelled for any other cause):
//     the agent stops distribution, then the node, gracefully, and exits;
//   - SIGUSR2 (cause ErrDetach): the agent exits and leaves them running;
//     an agent started later finds them through their pid files in its
//     directory and adopts them once their running images are the
//     verified binaries (adopt.go).
var (
	// ErrDetach is the cause of a stop that leaves the children running.
	ErrDetach = errors.New("agent detached (SIGUSR2): its node and distribution keep running")
	// ErrStopped is the cause of a stop that stops the children.
	ErrStopped = errors.New("agent stopped (SIGTERM): its node and distribution were stopped")
)

// DetachSignal is the signal that stops the agent leaving its children
// running.
const DetachSignal = syscall.SIGUSR2

// SignalContext returns a context cancelled by SIGTERM or SIGINT (cause
// ErrStopped) or by DetachSignal (cause ErrDetach), for Run.
func SignalContext(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(parent)
	ch := make(chan os.Signal, 2)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM, DetachSignal)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-ch:
			if s == DetachSignal {
				cancel(ErrDetach)
			} else {
				cancel(ErrStopped)
			}
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(ch)
		close(done)
		cancel(context.Canceled)
	}
}

// childStopGrace bounds how long stopping the children at exit may take.
const childStopGrace = 30 * time.Second

// stopChildren runs when the agent exits: unless the stop's cause is
// ErrDetach, distribution and then the node are stopped gracefully.
func (a *Agent) stopChildren(cause error) {
	if errors.Is(cause, ErrDetach) {
		a.log.Info("agent stopped; node and distribution keep running (a restarted agent adopts them)", "cause", cause.Error())
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), childStopGrace)
	defer cancel()
	var errs []error
	if a.host.dist != nil {
		errs = append(errs, a.host.dist.stop(ctx))
	}
	errs = append(errs, a.host.node.stop(ctx))
	if err := errors.Join(errs...); err != nil {
		a.log.Error("agent stopped; stopping its children failed", "err", err)
		return
	}
	a.log.Info("agent stopped with its node and distribution")
}
