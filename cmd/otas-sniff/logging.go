package main

import (
	"io"
	"log/slog"
	"strings"

	"github.com/spf13/cobra"
)

// logFlags are --log-format and --log-level.
type logFlags struct {
	format string
	level  string
}

func registerLogFlags(root *cobra.Command) *logFlags {
	l := &logFlags{}
	root.PersistentFlags().StringVar(&l.format, "log-format", "text", "log format: text or json")
	root.PersistentFlags().StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
	return l
}

func (l *logFlags) validate() error {
	if l.format != "text" && l.format != "json" {
		return usageErrorf("--log-format must be text or json, not %q", l.format)
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(l.level)); err != nil {
		return usageErrorf("--log-level must be debug, info, warn or error, not %q", l.level)
	}
	return nil
}

// logger builds the slog.Logger the flags ask for, writing to w.
func (l *logFlags) logger(w io.Writer) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(strings.ToLower(l.level)))
	opts := &slog.HandlerOptions{Level: lv}
	if l.format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// loggerFor returns the logger for cmd from the root's log flags.
func loggerFor(cmd *cobra.Command) *slog.Logger {
	l := &logFlags{format: "text", level: "info"}
	if f := cmd.Flags().Lookup("log-format"); f != nil {
		l.format = f.Value.String()
	}
	if f := cmd.Flags().Lookup("log-level"); f != nil {
		l.level = f.Value.String()
	}
	return l.logger(cmd.ErrOrStderr())
}
