package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/otas/otas-sniff/forwarder"
)

// envOr returns the environment variable's value, or def when it is unset.
func envOr(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// addOTASConnFlags registers the flags that say where OTAS is and how to reach
// it. OTAS_AUTH_URL and OTAS_INGEST_URL become the defaults, so a flag given on
// the command line wins over them.
func addOTASConnFlags(fs *pflag.FlagSet, cfg *forwarder.OTASConfig) {
	fs.StringVar(&cfg.AuthURL, "auth-url", envOr("OTAS_AUTH_URL", forwarder.DefaultAuthURL), "OTAS key service (uasam) base URL [env OTAS_AUTH_URL]")
	fs.StringVar(&cfg.SDKKeyFile, "sdk-key-file", "", "read the SDK key from this file instead of OTAS_SDK_KEY")
	fs.StringVar(&cfg.CAFile, "ca-file", "", "PEM file of extra CA certificates to trust for https (a private CA)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "allow plain http to hosts other than loopback (certificates are still checked for https)")
}

// addOTASFlags registers every flag of the otas output on fs, bound to cfg.
func addOTASFlags(fs *pflag.FlagSet, cfg *forwarder.OTASConfig) {
	addOTASConnFlags(fs, cfg)
	fs.StringVar(&cfg.IngestURL, "ingest-url", envOr("OTAS_INGEST_URL", forwarder.DefaultIngestURL), "OTAS ingestion service (brain) base URL [env OTAS_INGEST_URL]")
	fs.IntVar(&cfg.BatchSize, "batch-size", forwarder.DefaultBatchSize, "events per upload batch at most")
	fs.IntVar(&cfg.BatchBytes, "batch-bytes", forwarder.DefaultBatchBytes, "uncompressed bytes per upload batch at most")
	fs.DurationVar(&cfg.FlushInterval, "flush-interval", forwarder.DefaultFlushInterval, "send a batch that is not full after this long")
	fs.IntVar(&cfg.Workers, "upload-workers", forwarder.DefaultWorkers, "uploads in flight at once")
	fs.IntVar(&cfg.QueueSize, "queue-size", forwarder.DefaultQueueSize, "events held in memory waiting for upload")
	fs.StringVar(&cfg.SpoolDir, "spool-dir", "", "keep events that cannot be sent now in this directory and send them later, also after a restart")
	fs.Int64Var(&cfg.SpoolMaxBytes, "spool-max-bytes", forwarder.DefaultSpoolMaxBytes, "spool size cap; the oldest events are dropped (and counted) beyond it")
	fs.BoolVar(&cfg.IncludeUntokened, "include-untokened", false, "also upload events whose request carried no agent session token")
	fs.DurationVar(&cfg.AuthTimeout, "auth-timeout", forwarder.DefaultAuthTimeout, "how long a replay waits for OTAS to authenticate the key")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", forwarder.DefaultDrainTimeout, "how long shutdown keeps sending before spooling (or dropping) the rest")
}

// checkOTASFlags rejects flag values that make no sense.
func checkOTASFlags(cfg *forwarder.OTASConfig) error {
	switch {
	case cfg.BatchSize < 1:
		return usageErrorf("--batch-size must be at least 1, not %d", cfg.BatchSize)
	case cfg.BatchBytes < 1024:
		return usageErrorf("--batch-bytes must be at least 1024, not %d", cfg.BatchBytes)
	case cfg.FlushInterval <= 0 || cfg.AuthTimeout <= 0 || cfg.DrainTimeout <= 0:
		return usageErrorf("--flush-interval, --auth-timeout and --drain-timeout must be positive durations like 1s")
	case cfg.Workers < 1:
		return usageErrorf("--upload-workers must be at least 1, not %d", cfg.Workers)
	case cfg.QueueSize < 1:
		return usageErrorf("--queue-size must be at least 1, not %d", cfg.QueueSize)
	case cfg.SpoolMaxBytes < 1<<20:
		return usageErrorf("--spool-max-bytes must be at least 1 MiB, not %d", cfg.SpoolMaxBytes)
	}
	return nil
}

// otasError gives OTAS configuration and authentication errors their exit code.
func otasError(err error) error {
	var ce *forwarder.OTASConfigError
	var ae *forwarder.OTASAuthError
	if errors.As(err, &ce) || errors.As(err, &ae) {
		return withCode(exitOTAS, err)
	}
	return err
}

// redactorFlags are the redaction flags every command that writes events has.
type redactorFlags struct {
	headers  []string
	params   []string
	patterns []string
}

func (r *redactorFlags) register(fs *pflag.FlagSet) {
	fs.StringSliceVar(&r.headers, "redact-header", nil, "also redact this header's value, repeatable or comma-separated [env OTAS_SENSITIVE_HEADERS adds more]")
	fs.StringSliceVar(&r.params, "redact-param", nil, "also redact this query parameter, form field or JSON key, repeatable or comma-separated")
	fs.StringArrayVar(&r.patterns, "redact-pattern", nil, "also redact values matching this regular expression anywhere (only its first group when it has one), repeatable")
}

// options builds the redactor options from the flags and OTAS_SENSITIVE_HEADERS
// read with getenv.
func (r *redactorFlags) options(getenv func(string) string) (forwarder.RedactorOptions, error) {
	var opts forwarder.RedactorOptions
	opts.Headers = append(opts.Headers, r.headers...)
	if getenv != nil {
		for _, h := range strings.Split(getenv("OTAS_SENSITIVE_HEADERS"), ",") {
			if h = strings.TrimSpace(h); h != "" {
				opts.Headers = append(opts.Headers, h)
			}
		}
	}
	opts.Params = append(opts.Params, r.params...)
	for _, p := range r.patterns {
		re, err := regexp.Compile(p)
		if err != nil {
			return opts, usageErrorf("--redact-pattern %q: %v", p, err)
		}
		if re.MatchString("") {
			return opts, usageErrorf("--redact-pattern %q matches the empty string", p)
		}
		opts.Patterns = append(opts.Patterns, re)
	}
	return opts, nil
}

// newAuthCmd is `otas-sniff auth`: check the SDK key against OTAS and print the
// project it belongs to.
func newAuthCmd() *cobra.Command {
	var cfg forwarder.OTASConfig
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "Check the OTAS SDK key and print the project it belongs to",
		Long: `auth reads the SDK key from OTAS_SDK_KEY (or --sdk-key-file), checks its form,
asks the OTAS key service whether it is valid, and prints the project's id and
name. Exit code 7 when the key is missing, malformed or rejected, or OTAS cannot
be reached.`,
		Example: `  export OTAS_SDK_KEY='otas_...'
  otas-sniff auth
  otas-sniff auth --auth-url https://otas.example.com/ --sdk-key-file /run/secrets/otas-key`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if timeout <= 0 {
				return usageErrorf("--timeout must be a positive duration like 10s")
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			key, err := forwarder.LoadSDKKey(os.Getenv, cfg.SDKKeyFile)
			if err != nil {
				return otasError(err)
			}
			cfg.SDKKey = key
			cfg.RequestTimeout = timeout
			p, err := forwarder.Authenticate(ctx, cfg)
			if err != nil {
				return otasError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "authenticated: project %q (id %s)\n", p.Name, p.ID)
			return nil
		},
	}
	addOTASConnFlags(cmd.Flags(), &cfg)
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "give up after this long")
	return cmd
}
