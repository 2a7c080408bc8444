package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/gopacket/gopacket/pcap"
	"github.com/spf13/cobra"
)

// libpcap's PCAP_IF_* flags.
const (
	pcapIfLoopback = 0x1
	pcapIfUp       = 0x2
	pcapIfRunning  = 0x4
)

func newInterfacesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "interfaces",
		Short: "List the interfaces live capture can use, with addresses and state",
		Long: `interfaces lists what -i accepts: each device libpcap finds, its addresses, whether
it is up, running or a loopback, and the packets it has moved, to tell which carry
the traffic to watch. Needs no privileges.`,
		Example: `  otas-sniff interfaces
  sudo otas-sniff -i "$(otas-sniff interfaces | awk '/carries traffic/ {print $1; exit}')" -p 8000 -o jsonl:-`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			devs, err := pcap.FindAllDevs()
			if err != nil {
				return withCode(exitInterface, fmt.Errorf("listing interfaces: %w", err))
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "INTERFACE\tSTATE\tPACKETS (rx/tx)\tADDRESSES\tHINT")
			for _, d := range devs {
				rx, tx, haveCounts := packetCounts(d.Name)
				counts := "-"
				if haveCounts {
					counts = fmt.Sprintf("%d/%d", rx, tx)
				}
				var addrs []string
				for _, a := range d.Addresses {
					if a.IP == nil {
						continue
					}
					ones, _ := a.Netmask.Size()
					addrs = append(addrs, fmt.Sprintf("%s/%d", a.IP, ones))
				}
				addr := strings.Join(addrs, ",")
				if addr == "" {
					addr = "-"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.Name, state(d.Flags), counts, addr, hint(d, rx+tx))
			}
			return tw.Flush()
		},
	}
}

func state(flags uint32) string {
	var s []string
	if flags&pcapIfUp != 0 {
		s = append(s, "up")
	} else {
		s = append(s, "down")
	}
	if flags&pcapIfRunning != 0 {
		s = append(s, "running")
	}
	if flags&pcapIfLoopback != 0 {
		s = append(s, "loopback")
	}
	return strings.Join(s, ",")
}

// hint says in a word what the interface is good for.
func hint(d pcap.Interface, packets uint64) string {
	switch {
	case d.Name == "any":
		return "every interface at once"
	case d.Flags&pcapIfUp == 0 || d.Flags&pcapIfRunning == 0:
		return "not carrying traffic (down)"
	case d.Flags&pcapIfLoopback != 0:
		return "local traffic only"
	case len(d.Addresses) == 0:
		return "no address: only mirrored or bridged traffic"
	case packets == 0:
		return "up, no traffic yet"
	}
	return "carries traffic"
}

// packetCounts reads the kernel's packet counters for an interface.
func packetCounts(name string) (rx, tx uint64, ok bool) {
	dir := filepath.Join("/sys/class/net", name, "statistics")
	read := func(f string) (uint64, bool) {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			return 0, false
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		return n, err == nil
	}
	rx, okr := read("rx_packets")
	tx, okt := read("tx_packets")
	return rx, tx, okr && okt
}
