package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/otas/otas-sniff/capture"
	"github.com/otas/otas-sniff/forwarder"
	"github.com/otas/otas-sniff/internal/doctor"
)

// doctorFlags are `otas-sniff doctor`'s flags.
type doctorFlags struct {
	iface   string
	pcaps   []string
	ports   string
	watch   time.Duration
	snaplen int
	json    bool
	outputs []string
	otas    forwarder.OTASConfig
	timeout time.Duration
}

// newDoctorCmd is `otas-sniff doctor`: one command that says why no traffic
// shows up or reaches OTAS.
func newDoctorCmd() *cobra.Command {
	var f doctorFlags
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Watch the port briefly and say why no traffic shows up or reaches OTAS",
		Long: `doctor watches a port on an interface for a while (--for, 10 s) or reads capture
files, then prints a checklist: capture privileges, the interface (and which other
interfaces carry the port's traffic), what the traffic is (HTTP/1.x, TLS with its
SNI, HTTP/2, other), whether both directions are visible, capture quality (drops,
snap length, checksums, gaps), and OTAS (key, authentication, round trip, batch
endpoint, agent session tokens). Every warning and failure comes with the next
step, and the last line names the most likely reason nothing reaches OTAS.

Exit code 0 when no check fails (warnings allowed), 1 when one does.`,
		Example: `  sudo otas-sniff doctor -i eth0 -p 8000
  sudo otas-sniff doctor -i any -p 8000 --for 30s --json
  otas-sniff doctor --pcap capture.pcap -p 8000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runDoctor(cmd, &f) },
	}
	fs := cmd.Flags()
	fs.StringVarP(&f.iface, "interface", "i", "", "interface to watch (any for all)")
	fs.StringSliceVar(&f.pcaps, "pcap", nil, "diagnose these capture files instead (repeatable; - is standard input)")
	fs.StringVarP(&f.ports, "port", "p", "", "the server's ports: 8000, 8000,8080, 8080-8089 (required)")
	fs.DurationVar(&f.watch, "for", 10*time.Second, "how long to watch the interface")
	fs.IntVar(&f.snaplen, "snaplen", capture.DefaultSnapLen, "bytes kept per packet, as the capture you want to check would use")
	fs.BoolVar(&f.json, "json", false, "print the report as one JSON object")
	fs.StringArrayVarP(&f.outputs, "output", "o", []string{"otas"}, "the outputs the capture would use; OTAS is checked only when one is otas")
	fs.DurationVar(&f.timeout, "otas-timeout", 5*time.Second, "how long each request to OTAS may take")
	addOTASConnFlags(fs, &f.otas)
	fs.StringVar(&f.otas.IngestURL, "ingest-url", envOr("OTAS_INGEST_URL", forwarder.DefaultIngestURL), "OTAS ingestion service (brain) base URL [env OTAS_INGEST_URL]")
	return cmd
}

func runDoctor(cmd *cobra.Command, f *doctorFlags) error {
	switch {
	case f.iface == "" && len(f.pcaps) == 0:
		return usageErrorf("give an interface to watch (-i eth0) or capture files (--pcap FILE)")
	case f.iface != "" && len(f.pcaps) > 0:
		return usageErrorf("-i and --pcap exclude each other: watch an interface or read files")
	case f.ports == "":
		return usageErrorf("-p is required: the doctor looks at one server's port (-p 8000)")
	case f.watch <= 0:
		return usageErrorf("--for must be a positive duration like 10s")
	case f.snaplen < 64 || f.snaplen > 262144:
		return usageErrorf("--snaplen must be from 64 to 262144, not %d", f.snaplen)
	case f.timeout <= 0:
		return usageErrorf("--otas-timeout must be a positive duration like 5s")
	}
	ports, err := capture.ParsePorts(f.ports)
	if err != nil {
		return usageErrorf("-p: %v", err)
	}
	opts := doctor.Options{
		Interface: f.iface, Files: f.pcaps, Stdin: cmd.InOrStdin(), Ports: ports,
		For: f.watch, SnapLen: f.snaplen, Logger: loggerFor(cmd),
		Rerun: "otas-sniff " + strings.Join(os.Args[1:], " "),
	}
	if slices.ContainsFunc(f.outputs, func(o string) bool { return strings.TrimSpace(o) == "otas" }) {
		opts.OTAS = &doctor.OTASOptions{Config: f.otas, Getenv: os.Getenv, Timeout: f.timeout}
	}
	report, err := doctor.Run(cmd.Context(), opts)
	if err != nil {
		// Run fails only for capture files it cannot read at all.
		return withCode(exitInput, err)
	}
	out := cmd.OutOrStdout()
	if f.json {
		err = report.WriteJSON(out)
	} else {
		err = report.WriteText(out)
	}
	if err != nil {
		return withCode(exitOutput, err)
	}
	if report.Failed() {
		n := 0
		for _, c := range report.Checks {
			if c.Status == doctor.Fail {
				n++
			}
		}
		return withCode(exitFailure, fmt.Errorf("doctor: %d of %d checks failed", n, len(report.Checks)))
	}
	return nil
}
