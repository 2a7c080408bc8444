// Command otas-sniff watches HTTP/1.x traffic on the wire, or in capture files,
// and reports every request/response pair as an OTAS event.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otas/otas-sniff/internal/config"
)

// Exit codes, documented in the README.
const (
	exitOK         = 0
	exitFailure    = 1 // an unexpected runtime error
	exitUsage      = 2 // a flag or argument that makes no sense
	exitInput      = 3 // input is not a readable capture (missing, not pcap/pcapng, unknown link type)
	exitTruncated  = 4 // input ended mid-packet: everything before the cut was emitted
	exitPermission = 5 // not allowed to capture
	exitInterface  = 6 // the interface does not exist or went down
	exitOTAS       = 7 // OTAS key missing, malformed or rejected
	exitOutput     = 8 // an output could not be written
)

// exitError carries the exit code that fits an error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

func usageErrorf(format string, args ...any) error {
	return withCode(exitUsage, fmt.Errorf(format, args...))
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line and returns the process exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd(stdin, stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	fmt.Fprintf(stderr, "otas-sniff: %v\n", err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	// cobra's own flag and argument errors.
	return exitUsage
}

func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "otas-sniff",
		Short: "Passive HTTP sniffer that reports API calls to OTAS",
		Long: `otas-sniff watches HTTP/1.x traffic on the wire or in capture files, pairs each
request with its response, redacts credentials, and writes one event per exchange
to OTAS or to local files. Nothing sits on the application's request path.`,
		Example: `  sudo otas-sniff -i eth0 -p 8000 -o jsonl:-
  sudo otas-sniff -i any -p 8000,8080-8089 -o jsonl:/var/log/otas/events.jsonl
  sudo otas-sniff -i eth0 -f 'tcp port 8000 and host 10.0.0.5' -o jsonl:-
  sudo otas-sniff -i eth0 -p 8000 --duration 30s -w debug.pcap -o jsonl:-
  otas-sniff interfaces
  otas-sniff replay capture.pcap -o jsonl:-
  tcpdump -w - -i eth0 port 8000 | otas-sniff replay - -o jsonl:-`,
		SilenceUsage:  true,
		SilenceErrors: true,
		// Without a subcommand, otas-sniff captures live.
		Args: cobra.NoArgs,
	}
	var live liveFlags
	live.register(root)
	root.RunE = func(cmd *cobra.Command, args []string) error { return runLive(cmd, &live) }
	var cpuProfile string
	root.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile to this file (for bug reports)")
	root.PersistentFlags().MarkHidden("cpuprofile")
	var stopProfile func()
	root.PersistentFlags().String(config.FileFlag, "", "YAML file of settings: flag names as keys (precedence: flag > OTAS_SNIFF_<FLAG> > file > default)")
	logs := registerLogFlags(root)
	root.PersistentPreRunE = func(cmd *cobra.Command, args []string) error {
		// Settings not given as flags come from OTAS_SNIFF_* and the --config file;
		// `otas-sniff config` applies them to the command it shows instead.
		if cmd.Name() == "config" && cmd.Parent() == cmd.Root() {
			return logs.validate()
		}
		if err := config.ApplyShared(cmd.Flags(), config.File(cmd.Flags(), os.Getenv), os.Getenv, anyCommandFlag(cmd.Root())); err != nil {
			return withCode(exitUsage, err)
		}
		if err := logs.validate(); err != nil {
			return err
		}
		if cpuProfile == "" {
			return nil
		}
		f, err := os.Create(cpuProfile)
		if err != nil {
			return withCode(exitOutput, fmt.Errorf("--cpuprofile: %w", err))
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return withCode(exitFailure, fmt.Errorf("--cpuprofile: %w", err))
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		return nil
	}
	root.PersistentPostRun = func(cmd *cobra.Command, args []string) {
		if stopProfile != nil {
			stopProfile()
		}
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newReplayCmd(), newInterfacesCmd(), newVersionCmd(), newConfigCmd(), newAuthCmd())
	root.AddCommand(newDoctorCmd())
	return root
}

// anyCommandFlag reports whether a name is a flag of any command, so one config
// file can hold the settings of every command.
func anyCommandFlag(root *cobra.Command) func(string) bool {
	names := map[string]bool{}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		c.Flags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		c.PersistentFlags().VisitAll(func(f *pflag.Flag) { names[f.Name] = true })
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return func(name string) bool { return names[name] }
}
