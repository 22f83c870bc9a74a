// Package cli implements the teeup operator command line. Each command group
// lives in its own file; NewRoot assembles them.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/teeup/teeup/internal/buildinfo"
)

// NewRoot returns the teeup root command with every command group attached.
func NewRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "teeup",
		Short:         "Run and upgrade a consensus network of TEE nodes",
		Long:          "teeup runs a consensus network whose nodes execute inside trusted execution environments\nand upgrades its enclave code without losing data, keys or trust.",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newPlatformCmd(),
		newEnclaveCmd(),
		newKeysCmd(),
		newHostCmd(),
		newGenesisCmd(),
		newReleaseCmd(),
		newMemberCmd(),
		newDevnetCmd(),
		newPayCmd(),
		newBalanceCmd(),
		newStatusCmd(),
		newAdminCmd(),
		newUpgradeCmd(),
		newFlagdayCmd(),
		newDemoCmd(),
		benchCommands(),
	)
	return root
}

// benchCommands assembles the 'teeup bench' group.
func benchCommands() *cobra.Command {
	b := newBenchCmd()
	b.AddCommand(newBenchSnapshotCmd(), newBenchHandoverCmd())
	return b
}

// Main runs the CLI with args and returns the process exit code. Errors are
// printed as one line on stderr.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := NewRoot()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintf(stderr, "teeup: %v\n", err)
		return exitCode(err)
	}
	return 0
}

// exitCode maps an error to a process exit code: 1 by default, or the code
// carried by an ExitError.
func exitCode(err error) int {
	var ee *ExitError
	if errors.As(err, &ee) {
		return ee.Code
	}
	return 1
}

// ExitError carries a specific exit code, for commands whose failure is a
// result (a failed check) rather than a malfunction.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// printJSON writes v to w as indented JSON (what most --json flags print).
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stdoutOf returns the command's output writer.
func stdoutOf(cmd *cobra.Command) io.Writer {
	if w := cmd.OutOrStdout(); w != nil {
		return w
	}
	return os.Stdout
}
