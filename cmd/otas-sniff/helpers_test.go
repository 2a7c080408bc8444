package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
)

// result is what one run of the command printed and returned.
type result struct {
	code   int
	stdout string
	stderr string
}

// runCmd runs the command line in-process, as main does.
func runCmd(t testing.TB, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code: code, stdout: out.String(), stderr: errb.String()}
}

// events decodes JSON lines.
func events(t testing.TB, jsonl string) []forwarder.Event {
	t.Helper()
	var evs []forwarder.Event
	sc := bufio.NewScanner(strings.NewReader(jsonl))
	sc.Buffer(make([]byte, 4<<20), 4<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var ev forwarder.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &ev), "line: %s", sc.Text())
		evs = append(evs, ev)
	}
	require.NoError(t, sc.Err())
	return evs
}

// replay runs `replay` on files with jsonl to stdout and returns the events.
func replay(t testing.TB, files []string, extra ...string) ([]forwarder.Event, result) {
	t.Helper()
	args := append([]string{"replay"}, files...)
	args = append(args, "-o", "jsonl:-")
	args = append(args, extra...)
	r := runCmd(t, "", args...)
	return events(t, r.stdout), r
}
