// Command teeup-node is the teeup consensus node. It runs as an enclave:
// its MRENCLAVE is what peers compare before they talk to it.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/teeup/teeup/node"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	cmd := node.NewCommand(os.Stdout, os.Stderr)
	err := cmd.ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "teeup-node: %v\n", err)
		os.Exit(1)
	}
}
