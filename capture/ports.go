package capture

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// PortRange is an inclusive range of TCP ports.
type PortRange struct{ Lo, Hi uint16 }

// Ports is a set of TCP ports given as a list of ports and ranges.
type Ports []PortRange

// ParsePorts parses "8000", "8000,8080" and "8080-8089" (and mixes of them).
func ParsePorts(s string) (Ports, error) {
	var ps Ports
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		l, err := parsePort(lo)
		if err != nil {
			return nil, fmt.Errorf("port %q: %w", part, err)
		}
		h := l
		if isRange {
			if h, err = parsePort(hi); err != nil {
				return nil, fmt.Errorf("port range %q: %w", part, err)
			}
			if h < l {
				return nil, fmt.Errorf("port range %q: the first port is greater than the last", part)
			}
		}
		ps = append(ps, PortRange{l, h})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("no port in %q: give ports like 8000,8080-8089", s)
	}
	return ps, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number from 1 to 65535", s)
	}
	return uint16(n), nil
}

// Contains reports whether p is in the set. An empty set contains every port.
func (ps Ports) Contains(p uint16) bool {
	if len(ps) == 0 {
		return true
	}
	for _, r := range ps {
		if r.Lo <= p && p <= r.Hi {
			return true
		}
	}
	return false
}

// BPF returns a libpcap filter matching TCP traffic on the ports, or "tcp" for
// an empty set.
func (ps Ports) BPF() string {
	if len(ps) == 0 {
		return "tcp"
	}
	terms := make([]string, 0, len(ps))
	for _, r := range ps {
		if r.Lo == r.Hi {
			terms = append(terms, fmt.Sprintf("port %d", r.Lo))
		} else {
			terms = append(terms, fmt.Sprintf("portrange %d-%d", r.Lo, r.Hi))
		}
	}
	terms = slices.Compact(terms)
	return "tcp and (" + strings.Join(terms, " or ") + ")"
}

func (ps Ports) String() string {
	parts := make([]string, 0, len(ps))
	for _, r := range ps {
		if r.Lo == r.Hi {
			parts = append(parts, strconv.Itoa(int(r.Lo)))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", r.Lo, r.Hi))
		}
	}
	return strings.Join(parts, ",")
}
