// Command maxrss runs a command and prints its peak resident memory, wall time
// and CPU time, for the benchmark scripts:
//
//	go run ./bench/maxrss -- bin/otas-sniff replay big.pcap -o jsonl:/dev/null
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "usage: maxrss -- COMMAND [ARG...]")
		os.Exit(2)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "maxrss:", err)
		os.Exit(1)
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	// ru_maxrss is in KiB on Linux.
	fmt.Fprintf(os.Stderr, "maxrss: peak_rss_mb=%.1f wall_s=%.2f cpu_s=%.2f exit=%d\n", float64(ru.Maxrss)/1024, wall.Seconds(), cpu.Seconds(), cmd.ProcessState.ExitCode())
	os.Exit(cmd.ProcessState.ExitCode())
}
