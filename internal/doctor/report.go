package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
)

// Status is a check's outcome.
type Status string

// Check outcomes. Skip is for a check that could not run because an earlier
// one failed (no capture, no key); it never decides the exit code.
const (
	OK   Status = "ok"
	Warn Status = "warn"
	Fail Status = "fail"
	Skip Status = "skip"
)

// symbol is how the text checklist shows a status.
func (s Status) symbol() string {
	switch s {
	case OK:
		return "✔"
	case Warn:
		return "⚠"
	case Fail:
		return "✗"
	}
	return "–"
}

// Check is one line of the checklist.
type Check struct {
	// Name is the stable identifier scripts match on ("privileges", "traffic", ...).
	Name   string `json:"name"`
	Status Status `json:"status"`
	// Reason is the one-line finding.
	Reason string `json:"reason"`
	// Next is the exact next step (a command or a flag); set for every warn and fail.
	Next string `json:"next,omitempty"`
	// Blocking marks a warning that by itself keeps events from reaching OTAS
	// (no key set): the verdict names it when nothing fails.
	Blocking bool `json:"-"`
	// Data holds the counts behind the reason, for scripts.
	Data map[string]any `json:"data,omitempty"`
}

// Report is the result of one doctor run.
type Report struct {
	// Source is what was watched: "interface eth0" or "file capture.pcap".
	Source  string        `json:"source"`
	Ports   string        `json:"ports"`
	Watched time.Duration `json:"-"`
	Checks  []Check       `json:"checks"`
	// Verdict is the one most likely reason nothing reaches OTAS, or "all good".
	Verdict string `json:"verdict"`
	// VerdictCheck names the check the verdict comes from; empty when all good.
	VerdictCheck string `json:"verdict_check,omitempty"`
	// OK is false when any check failed (the exit code is then 1).
	OK bool `json:"ok"`
}

// Failed reports whether any check failed.
func (r *Report) Failed() bool {
	for _, c := range r.Checks {
		if c.Status == Fail {
			return true
		}
	}
	return false
}

// Check returns the named check, or nil.
func (r *Report) Check(name string) *Check {
	for i := range r.Checks {
		if r.Checks[i].Name == name {
			return &r.Checks[i]
		}
	}
	return nil
}

// conclude sets the verdict: the failure that ranks first (cause before
// effect), else the first blocking warning.
func (r *Report) conclude() {
	r.OK = !r.Failed()
	r.Verdict, r.VerdictCheck = "all good", ""
	best := -1
	for i, c := range r.Checks {
		if (c.Status == Fail || c.Status == Warn && c.Blocking) && (best < 0 || worse(c, r.Checks[best])) {
			best = i
		}
	}
	if best >= 0 {
		r.Verdict, r.VerdictCheck = r.Checks[best].Reason, r.Checks[best].Name
		return
	}
	warns := 0
	for _, c := range r.Checks {
		if c.Status == Warn {
			warns++
		}
	}
	if warns > 0 {
		r.Verdict = fmt.Sprintf("all good (%d %s above)", warns, plural(warns, "warning", "warnings"))
	}
}

// WriteText writes the checklist for people.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "otas-sniff doctor: %s, port %s", r.Source, r.Ports)
	if r.Watched > 0 {
		// A file may span milliseconds; a live window is seconds.
		unit := 100 * time.Millisecond
		if r.Watched < time.Second {
			unit = time.Millisecond
		}
		fmt.Fprintf(&b, ", watched %s", r.Watched.Round(unit))
	}
	b.WriteString("\n\n")
	width := 0
	for _, c := range r.Checks {
		width = max(width, len(c.Name))
	}
	pad := strings.Repeat(" ", width+4)
	for _, c := range r.Checks {
		fmt.Fprintf(&b, "%s %-*s  %s\n", c.Status.symbol(), width, c.Name, c.Reason)
		if c.Next != "" && (c.Status == Warn || c.Status == Fail) {
			fmt.Fprintf(&b, "%s→ %s\n", pad, c.Next)
		}
	}
	b.WriteString("\n")
	if r.VerdictCheck != "" {
		fmt.Fprintf(&b, "most likely reason nothing reaches OTAS (%s): %s\n", r.VerdictCheck, r.Verdict)
	} else {
		fmt.Fprintf(&b, "%s\n", r.Verdict)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes the report as one indented JSON object.
func (r *Report) WriteJSON(w io.Writer) error {
	type alias Report
	out := struct {
		*alias
		WatchedSeconds float64 `json:"watched_seconds,omitempty"`
	}{alias: (*alias)(r), WatchedSeconds: r.Watched.Seconds()}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// worse reports whether a explains missing events better than b: a failure
// beats a warning, then the earlier rank wins.
func worse(a, b Check) bool {
	if (a.Status == Fail) != (b.Status == Fail) {
		return a.Status == Fail
	}
	return rank(a.Name) < rank(b.Name)
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// count formats "3 connections".
func count[T ~int | ~uint64 | ~int64](n T, one, many string) string {
	return fmt.Sprintf("%d %s", n, plural(int(n), one, many))
}
