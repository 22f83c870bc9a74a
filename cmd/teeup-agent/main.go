// Command teeup-agent is the per-host upgrade agent (the seed's DCUpgrade):
// an enclave that supervises the node, follows network-signed releases and
// moves the node's keys to a new version through the key handover.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/teeup/teeup/agent"
)

func main() {
	// SIGTERM stops the agent with its node and distribution; SIGUSR2
	// stops it alone (a restarted agent adopts them).
	ctx, stop := agent.SignalContext(context.Background())
	err := agent.NewCommand(os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "teeup-agent: %v\n", err)
		os.Exit(1)
	}
}
