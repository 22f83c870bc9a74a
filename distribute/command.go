package distribute

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"

	"github.com/teeup/teeup/internal/buildinfo"
	"github.com/teeup/teeup/nodeapi"
)

// NewCommand returns the teeup-distribute command line.
func NewCommand(stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:           "teeup-distribute",
		Short:         "Publish a teeup node's finalized blocks to a directory or S3 (untrusted host process)",
		Version:       buildinfo.Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var (
		adminSocket, nodeAddr, rootPath, dest, state, metrics string
		mrenclaves                                            []string
		poll                                                  time.Duration
		start                                                 uint64
	)
	run := &cobra.Command{
		Use:   "run --dest DEST --state FILE (--admin-socket PATH | --node ADDR --root CRT --mrenclave HEX)",
		Short: "Follow the node and publish every finalized block exactly once",
		Long: `Follow a node's finalized blocks and publish them, still encrypted and signed, to DEST:
a directory ("dir:/path" or a plain path) or an S3 bucket
("s3://bucket/prefix?endpoint=host:port&insecure=1", credentials from AWS_ACCESS_KEY_ID and
AWS_SECRET_ACCESS_KEY). The state file {"next_block": N} is written atomically after each block;
at start it is reconciled with DEST so no block is skipped or uploaded twice.

The node is reached through its local admin socket (same host), or remotely through the
attested client API (--node, pinning --root and the expected --mrenclave).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dest == "" || state == "" {
				return errors.New("--dest and --state are required")
			}
			logger := slog.New(slog.NewJSONHandler(stderr, nil))
			var src Source
			switch {
			case adminSocket != "":
				src = NewNodeSource(nodeapi.NewAdminClient(adminSocket))
			case nodeAddr != "":
				c, err := attestedClient(nodeAddr, rootPath, mrenclaves)
				if err != nil {
					return err
				}
				src = NewNodeSource(c)
			default:
				return errors.New("say where the node is: --admin-socket PATH, or --node ADDR --root CRT --mrenclave HEX")
			}
			d, err := ParseDestination(cmd.Context(), dest, S3Credentials{AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY")})
			if err != nil {
				return err
			}
			var reg prometheus.Registerer
			if metrics != "" {
				r := prometheus.NewRegistry()
				reg = r
				ln, err := net.Listen("tcp", metrics)
				if err != nil {
					return fmt.Errorf("metrics: %w", err)
				}
				mux := http.NewServeMux()
				mux.Handle("/metrics", promhttp.HandlerFor(r, promhttp.HandlerOpts{}))
				srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
				go func() { _ = srv.Serve(ln) }()
				defer srv.Close()
			}
			dist, err := New(Config{StatePath: state, Source: src, Dest: d, Start: start, PollInterval: poll, Logger: logger, Metrics: reg})
			if err != nil {
				return err
			}
			logger.Info("distribution started", "dest", d.String(), "state", state)
			err = dist.Run(cmd.Context())
			if cmd.Context().Err() != nil {
				logger.Info("distribution stopped", "next_block", dist.Next())
				return nil
			}
			return err
		},
	}
	f := run.Flags()
	f.StringVar(&adminSocket, "admin-socket", "", "node admin socket on this host")
	f.StringVar(&nodeAddr, "node", "", "node client API address (attested TLS)")
	f.StringVar(&rootPath, "root", "", "with --node: simulated attestation root certificate to pin")
	f.StringSliceVar(&mrenclaves, "mrenclave", nil, "with --node: expected node MRENCLAVE(s)")
	f.StringVar(&dest, "dest", "", "destination: directory or s3://bucket/prefix?endpoint=...")
	f.StringVar(&state, "state", "", "state file path")
	f.DurationVar(&poll, "poll", 500*time.Millisecond, "how often to poll the node for new blocks")
	f.Uint64Var(&start, "start", 0, "first height to publish when no state file exists")
	f.StringVar(&metrics, "metrics-listen", "", "serve Prometheus metrics on this address")
	root.AddCommand(run)
	return root
}

func attestedClient(addr, rootPath string, ms []string) (*nodeapi.Client, error) {
	return nodeapi.Dial(nodeapi.DialConfig{Addr: addr, RootPath: rootPath, MREnclaves: ms})
}
