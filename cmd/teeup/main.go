// Command teeup is the operator CLI: platform, enclave signing, keys,
// releases, devnet, payments, flag day and the demo.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/teeup/teeup/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
