package main

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReplayInputs(t *testing.T) {
	raw, err := os.ReadFile(fixturePath("go-api"))
	require.NoError(t, err)
	want, r := replay(t, []string{fixturePath("go-api")})
	require.Equal(t, exitOK, r.code, r.stderr)
	require.NotEmpty(t, want)

	t.Run("standard input", func(t *testing.T) {
		r := runCmd(t, string(raw), "replay", "-", "-o", "jsonl:-")
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Equal(t, triples(want), triples(events(t, r.stdout)))
	})
	t.Run("gzip-compressed file", func(t *testing.T) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(raw)
		zw.Close()
		path := filepath.Join(t.TempDir(), "go-api.pcap.gz")
		require.NoError(t, os.WriteFile(path, b.Bytes(), 0o644))
		got, r := replay(t, []string{path})
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Equal(t, triples(want), triples(got))
	})
	t.Run("jsonl file output", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "events.jsonl")
		r := runCmd(t, "", "replay", fixturePath("go-api"), "-o", "jsonl:"+out)
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Empty(t, r.stdout)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, triples(want), triples(events(t, string(b))))
	})
	t.Run("two outputs get the same events", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "events.jsonl")
		r := runCmd(t, "", "replay", fixturePath("go-api"), "-o", "jsonl:"+out, "-o", "jsonl:-")
		require.Equal(t, exitOK, r.code, r.stderr)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		assert.Equal(t, triples(events(t, r.stdout)), triples(events(t, string(b))))
	})
	t.Run("several files with a port filter", func(t *testing.T) {
		got, r := replay(t, []string{fixturePath("go-api"), fixturePath("curl-python")}, "-p", "18081")
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Len(t, got, len(clientCalls(t, "curl-python")))
		for _, ev := range got {
			assert.Contains(t, ev.Metadata.Server, ":18081")
		}
		all, r := replay(t, []string{fixturePath("go-api"), fixturePath("curl-python")}, "-p", "18080,18081")
		require.Equal(t, exitOK, r.code, r.stderr)
		assert.Len(t, all, len(want)+len(got))
		for i := 1; i < len(all); i++ {
			assert.False(t, all[i].Metadata.ResponseTime.Before(all[i-1].Metadata.ResponseTime), "events come out in response time order")
		}
	})
	t.Run("summary line", func(t *testing.T) {
		assert.Regexp(t, `otas-sniff: \d+ packets, \d+ TCP streams, \d+ exchanges, 0 unmatched requests, 0 unmatched responses, 0 parse errors`, r.stderr)
	})
}

// pcapHeader is a classic pcap file header for linkType.
func pcapHeader(linkType uint32) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 0xa1b2c3d4)
	binary.LittleEndian.PutUint16(b[4:], 2)
	binary.LittleEndian.PutUint16(b[6:], 4)
	binary.LittleEndian.PutUint32(b[16:], 65535)
	binary.LittleEndian.PutUint32(b[20:], linkType)
	return b
}

func TestReplayBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, b, 0o644))
		return p
	}
	raw, err := os.ReadFile(fixturePath("go-api"))
	require.NoError(t, err)
	complete, r := replay(t, []string{fixturePath("go-api")})
	require.Equal(t, exitOK, r.code)
	truncated := write("truncated.pcap", raw[:len(raw)*2/3+7])

	tests := []struct {
		name     string
		args     []string
		code     int
		stderr   string
		checkOut func(t *testing.T, r result)
	}{
		{name: "no file", args: []string{"replay"}, code: exitUsage, stderr: "at least one capture file"},
		{name: "missing file", args: []string{"replay", filepath.Join(dir, "nope.pcap"), "-o", "jsonl:-"}, code: exitInput, stderr: "nope.pcap"},
		{name: "not a capture", args: []string{"replay", write("notes.txt", []byte("hello, this is text\n")), "-o", "jsonl:-"}, code: exitInput, stderr: "not a pcap or pcapng"},
		{name: "unknown link type", args: []string{"replay", write("usb.pcap", pcapHeader(189)), "-o", "jsonl:-"}, code: exitInput, stderr: "189"},
		{name: "bad port", args: []string{"replay", fixturePath("go-api"), "-p", "80-", "-o", "jsonl:-"}, code: exitUsage, stderr: "--port"},
		{name: "bad output", args: []string{"replay", fixturePath("go-api"), "-o", "kafka:x"}, code: exitUsage, stderr: "unknown output"},
		{name: "unwritable output", args: []string{"replay", fixturePath("go-api"), "-o", "jsonl:" + filepath.Join(dir, "no", "such", "dir.jsonl")}, code: exitOutput, stderr: "no such file"},
		{name: "unknown flag", args: []string{"replay", fixturePath("go-api"), "--frobnicate"}, code: exitUsage, stderr: "unknown flag"},
		{name: "negative body size", args: []string{"replay", fixturePath("go-api"), "--max-body", "-1", "-o", "jsonl:-"}, code: exitUsage, stderr: "--max-body"},
		{
			name: "truncated file keeps what was read", args: []string{"replay", truncated, "-o", "jsonl:-"}, code: exitTruncated, stderr: "truncated",
			checkOut: func(t *testing.T, r result) {
				got := events(t, r.stdout)
				assert.NotEmpty(t, got, "events before the cut are emitted")
				assert.Less(t, len(got), len(complete)+1)
				assert.Contains(t, r.stderr, "exchanges", "the summary still comes")
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runCmd(t, "", tt.args...)
			assert.Equal(t, tt.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tt.stderr)
			if tt.checkOut != nil {
				tt.checkOut(t, r)
			}
		})
	}
}
