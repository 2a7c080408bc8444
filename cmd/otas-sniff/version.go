package main

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/gopacket/gopacket/pcap"
	"github.com/spf13/cobra"
)

// Set at build time: go build -ldflags "-X main.version=... -X main.commit=...".
var (
	version = "dev"
	commit  = ""
)

// buildCommit is the commit stamped at build time, else the one the Go
// toolchain recorded from the checkout.
func buildCommit() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return s.Value[:12]
			}
		}
	}
	return "unknown"
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "version",
		Short:   "Print the version, commit, Go version and libpcap version",
		Example: "  otas-sniff version",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "otas-sniff %s\ncommit:  %s\ngo:      %s %s/%s\nlibpcap: %s\n",
				version, buildCommit(), runtime.Version(), runtime.GOOS, runtime.GOARCH, pcap.Version())
			return nil
		},
	}
}
