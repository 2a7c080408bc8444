package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/forwarder"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

var fixtures = []string{"go-api", "curl-python", "any-ipv6"}

func fixturePath(name string) string {
	return filepath.Join("..", "..", "testdata", "captures", name+".pcap")
}

// clientCall is what the client that made a fixture's traffic recorded.
type clientCall struct {
	Method    string  `json:"method"`
	Path      string  `json:"path"`
	Status    int     `json:"status"`
	LatencyMS float64 `json:"latency_ms"`
}

func clientCalls(t *testing.T, name string) []clientCall {
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "captures", name+".client.json"))
	require.NoError(t, err)
	var calls []clientCall
	require.NoError(t, json.Unmarshal(b, &calls))
	return calls
}

func triples(evs []forwarder.Event) []string {
	out := make([]string, 0, len(evs))
	for _, ev := range evs {
		out = append(out, fmt.Sprintf("%s %s %d", ev.Method, ev.Path, ev.StatusCode))
	}
	return out
}

// TestFixturesMatchClients checks each recorded capture against what the clients
// that made the traffic saw: every exchange, in order, with its status, and a
// latency no longer than the client measured (the wire sees less than the client).
func TestFixturesMatchClients(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			evs, r := replay(t, []string{fixturePath(name)})
			require.Equal(t, 0, r.code, r.stderr)
			calls := clientCalls(t, name)
			want := make([]string, 0, len(calls))
			for _, c := range calls {
				want = append(want, fmt.Sprintf("%s %s %d", c.Method, c.Path, c.Status))
			}
			assert.Equal(t, want, triples(evs))
			for i, ev := range evs {
				if i >= len(calls) {
					break
				}
				assert.Empty(t, ev.Error, "exchange %d", i)
				assert.Greater(t, ev.LatencyMS, 0.0, "exchange %d", i)
				assert.LessOrEqual(t, ev.LatencyMS, calls[i].LatencyMS+1, "exchange %d: the wire cannot see a longer exchange than the client", i)
			}
			assert.Contains(t, r.stderr, fmt.Sprintf("%d exchanges", len(calls)))
		})
	}
}

// uuidPattern matches the random event ids, which differ on every run.
var uuidPattern = regexp.MustCompile(`"event_id":"[0-9a-f-]{36}"`)

// TestGolden compares the events of each fixture with testdata/golden/NAME.jsonl.
// Regenerate with: go test ./cmd/otas-sniff -run TestGolden -update
func TestGolden(t *testing.T) {
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			r := runCmd(t, "", "replay", fixturePath(name), "-o", "jsonl:-")
			require.Equal(t, 0, r.code, r.stderr)
			got := uuidPattern.ReplaceAllString(r.stdout, `"event_id":"<uuid>"`)
			golden := filepath.Join("..", "..", "testdata", "golden", name+".jsonl")
			if *update {
				require.NoError(t, os.MkdirAll(filepath.Dir(golden), 0o755))
				require.NoError(t, os.WriteFile(golden, []byte(got), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err, "no golden file: run go test ./cmd/otas-sniff -run TestGolden -update")
			assert.Equal(t, string(want), got)
		})
	}
}

// TestFixturesAgainstTshark compares (method, path, status) with what tshark
// decodes from the same capture. tshark is a reference, not the truth: where it is
// wrong the case is named and our answer is the client's (TestFixturesMatchClients).
func TestFixturesAgainstTshark(t *testing.T) {
	if _, err := exec.LookPath("tshark"); err != nil {
		t.Skip("tshark is not installed (apt-get install tshark; .ci/run installs it)")
	}
	// tshark frames the responses after a pipelined HEAD as if the HEAD response
	// had a body, so it loses the pairs after it on that connection.
	tsharkWrong := map[string][]string{
		"go-api": {"HEAD /api/users/2 200", "GET /api/users/3 200"},
	}
	for _, name := range fixtures {
		t.Run(name, func(t *testing.T) {
			theirs := tsharkExchanges(t, fixturePath(name))
			evs, r := replay(t, []string{fixturePath(name)})
			require.Equal(t, 0, r.code, r.stderr)
			ours := triples(evs)
			var missing []string
			for _, o := range ours {
				if i := indexOf(theirs, o); i >= 0 {
					theirs = append(theirs[:i], theirs[i+1:]...)
				} else {
					missing = append(missing, o)
				}
			}
			assert.ElementsMatch(t, tsharkWrong[name], missing, "exchanges tshark does not report")
			assert.Empty(t, theirs, "exchanges tshark reports that we do not")
		})
	}
}

func indexOf(xs []string, x string) int {
	for i, v := range xs {
		if v == x {
			return i
		}
	}
	return -1
}

// tsharkExchanges lists "METHOD PATH STATUS" for every final response tshark
// pairs with a request.
func tsharkExchanges(t *testing.T, file string) []string {
	fields := func(filter string, f ...string) [][]string {
		args := []string{"-r", file, "-Y", filter, "-T", "fields", "-E", "occurrence=f"}
		for _, x := range f {
			args = append(args, "-e", x)
		}
		out, err := exec.Command("tshark", args...).Output()
		require.NoError(t, err)
		var rows [][]string
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" {
				rows = append(rows, strings.Split(line, "\t"))
			}
		}
		return rows
	}
	// A segment holding several pipelined requests lists them comma-separated.
	requests := map[string][2][]string{}
	for _, r := range fields("http.request", "frame.number", "http.request.method", "http.request.uri") {
		requests[r[0]] = [2][]string{strings.Split(r[1], ","), strings.Split(r[2], ",")}
	}
	used := map[string]int{}
	var out []string
	for _, r := range fields("http.response", "http.request_in", "http.response.code") {
		if len(r) < 2 || strings.HasPrefix(r[1], "1") {
			continue
		}
		req, ok := requests[r[0]]
		if !ok {
			continue
		}
		i := used[r[0]]
		used[r[0]]++
		if i >= len(req[0]) {
			continue
		}
		path, _, _ := strings.Cut(req[1][i], "?")
		out = append(out, fmt.Sprintf("%s %s %s", req[0][i], path, r[1]))
	}
	return out
}

// harIDs matches the per-run event ids in a HAR.
var harIDs = regexp.MustCompile(`"_otasEventId":"[0-9a-f-]{36}"`)

// TestExampleHAR keeps examples/demo.har equal to the demo capture's HAR.
// Regenerate with: go test ./cmd/otas-sniff -run TestExampleHAR -update
func TestExampleHAR(t *testing.T) {
	r := runCmd(t, "", "replay", fixturePath("go-api"), "-o", "har:-", "-q")
	require.Equal(t, 0, r.code, r.stderr)
	got := harIDs.ReplaceAllString(r.stdout, `"_otasEventId":"00000000-0000-0000-0000-000000000000"`)
	path := filepath.Join("..", "..", "examples", "demo.har")
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, string(want), got)
	var doc struct {
		Log struct {
			Version string           `json:"version"`
			Entries []map[string]any `json:"entries"`
		} `json:"log"`
	}
	require.NoError(t, json.Unmarshal(want, &doc))
	assert.Equal(t, "1.2", doc.Log.Version)
	assert.Len(t, doc.Log.Entries, len(clientCalls(t, "go-api")))
}
