// Command teeup-distribute publishes a teeup node's finalized blocks to a
// directory or an S3 bucket. It is an untrusted host process.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/teeup/teeup/distribute"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := distribute.NewCommand(os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "teeup-distribute: %v\n", err)
		os.Exit(1)
	}
}
