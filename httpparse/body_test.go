package httpparse

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func compress(t testing.TB, coding string, plain []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	var w io.WriteCloser
	switch coding {
	case "gzip":
		w = gzip.NewWriter(&buf)
	case "zlib":
		w = zlib.NewWriter(&buf)
	case "raw-deflate":
		fw, err := flate.NewWriter(&buf, flate.BestCompression)
		require.NoError(t, err)
		w = fw
	case "br":
		w = brotli.NewWriter(&buf)
	default:
		t.Fatalf("unknown coding %q", coding)
	}
	_, err := w.Write(plain)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return buf.Bytes()
}

// responseWith builds an exchange whose response carries body with headers.
func responseWith(headers string, body []byte) []step {
	return []step{
		cli(0, "GET /body HTTP/1.1\r\n\r\n"),
		srv(ms, fmt.Sprintf("HTTP/1.1 200 OK\r\n%sContent-Length: %d\r\n\r\n%s", headers, len(body), body)),
	}
}

func chunked(body []byte, size int) string {
	var b strings.Builder
	for len(body) > 0 {
		n := min(size, len(body))
		fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
		body = body[n:]
	}
	b.WriteString("0\r\n\r\n")
	return b.String()
}

func TestBodyDecoding(t *testing.T) {
	plain := []byte(strings.Repeat(`{"id":1,"name":"otas"},`, 20))
	for _, c := range []struct{ header, coding string }{
		{"gzip", "gzip"}, {"x-gzip", "gzip"}, {"deflate", "zlib"}, {"deflate", "raw-deflate"}, {"br", "br"}, {"GZIP", "gzip"},
	} {
		t.Run(c.header+"/"+c.coding, func(t *testing.T) {
			enc := compress(t, c.coding, plain)
			runCase(t, parseCase{
				steps: responseWith("Content-Encoding: "+c.header+"\r\n", enc),
				check: func(t *testing.T, r result) {
					require.Len(t, r.exchanges, 1)
					resp := r.exchanges[0].Response
					assert.Equal(t, string(plain), string(resp.Body))
					assert.EqualValues(t, len(enc), resp.BodySize, "size as transferred")
					assert.False(t, resp.BodyTruncated)
					assert.Empty(t, resp.DecodeError)
				},
			})
		})
	}
	t.Run("chunked gzip is de-chunked then decoded", func(t *testing.T) {
		enc := compress(t, "gzip", plain)
		runCase(t, parseCase{
			steps: []step{
				cli(0, "GET / HTTP/1.1\r\n\r\n"),
				srv(ms, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n"+chunked(enc, 17)),
			},
			check: func(t *testing.T, r result) {
				require.Len(t, r.exchanges, 1)
				assert.Equal(t, string(plain), string(r.exchanges[0].Response.Body))
				assert.EqualValues(t, len(enc), r.exchanges[0].Response.BodySize)
			},
		})
	})
}

func TestBodyLimits(t *testing.T) {
	t.Run("plain body truncated at MaxBodyBytes", func(t *testing.T) {
		body := bytes.Repeat([]byte("0123456789"), 10)
		runCase(t, parseCase{
			opts:  Options{MaxBodyBytes: 25},
			steps: responseWith("", body),
			check: func(t *testing.T, r result) {
				resp := r.exchanges[0].Response
				assert.Equal(t, string(body[:25]), string(resp.Body))
				assert.True(t, resp.BodyTruncated)
				assert.EqualValues(t, 100, resp.BodySize)
			},
		})
	})
	t.Run("gzip body decoded to the limit", func(t *testing.T) {
		plain := bytes.Repeat([]byte("abcdefgh"), 1000)
		enc := compress(t, "gzip", plain)
		runCase(t, parseCase{
			opts:  Options{MaxBodyBytes: 100},
			steps: responseWith("Content-Encoding: gzip\r\n", enc),
			check: func(t *testing.T, r result) {
				resp := r.exchanges[0].Response
				assert.Equal(t, string(plain[:100]), string(resp.Body))
				assert.True(t, resp.BodyTruncated)
				assert.Empty(t, resp.DecodeError)
			},
		})
	})
	t.Run("compressed data cut by the limit is not a decode error", func(t *testing.T) {
		// Incompressible-ish input so the raw prefix kept is shorter than the body.
		plain := make([]byte, 4000)
		for i := range plain {
			plain[i] = byte(i*7919>>3) ^ byte(i)
		}
		enc := compress(t, "gzip", plain)
		runCase(t, parseCase{
			opts:  Options{MaxBodyBytes: 1000},
			steps: responseWith("Content-Encoding: gzip\r\n", enc),
			check: func(t *testing.T, r result) {
				resp := r.exchanges[0].Response
				assert.Empty(t, resp.DecodeError)
				assert.True(t, resp.BodyTruncated)
				assert.LessOrEqual(t, len(resp.Body), 1000)
				assert.Equal(t, string(plain[:len(resp.Body)]), string(resp.Body))
			},
		})
	})
	for _, coding := range []string{"gzip", "br", "zlib"} {
		t.Run("zip bomb "+coding, func(t *testing.T) {
			header := coding
			if coding == "zlib" {
				header = "deflate"
			}
			enc := compress(t, coding, make([]byte, 50<<20))
			require.Less(t, len(enc), 200<<10)
			whole := replay(Options{MaxBodyBytes: 4096}, responseWith("Content-Encoding: "+header+"\r\n", enc), 0, nil)
			require.Len(t, whole.exchanges, 1)
			resp := whole.exchanges[0].Response
			assert.Len(t, resp.Body, 4096)
			assert.True(t, resp.BodyTruncated)
			assert.EqualValues(t, len(enc), resp.BodySize)
		})
	}
	t.Run("decode failure keeps raw bytes", func(t *testing.T) {
		raw := []byte("this is not gzip at all")
		runCase(t, parseCase{
			steps: responseWith("Content-Encoding: gzip\r\n", raw),
			check: func(t *testing.T, r result) {
				resp := r.exchanges[0].Response
				assert.Contains(t, resp.DecodeError, "gzip")
				assert.Equal(t, string(raw), string(resp.Body))
				assert.EqualValues(t, 1, r.stats.DecodeErrors)
			},
		})
	})
	t.Run("corrupt gzip trailer is a decode error", func(t *testing.T) {
		enc := compress(t, "gzip", []byte("hello hello hello"))
		enc[len(enc)-5] ^= 0xff // CRC
		runCase(t, parseCase{
			steps: responseWith("Content-Encoding: gzip\r\n", enc),
			check: func(t *testing.T, r result) {
				resp := r.exchanges[0].Response
				assert.NotEmpty(t, resp.DecodeError)
				assert.Equal(t, enc, resp.Body)
			},
		})
	})
	for _, ct := range []string{"multipart/form-data; boundary=xyz", "application/octet-stream", "Application/Octet-Stream"} {
		t.Run("not kept: "+ct, func(t *testing.T) {
			runCase(t, parseCase{
				steps: []step{
					cli(0, "POST /upload HTTP/1.1\r\nContent-Type: "+ct+"\r\nContent-Length: 6\r\n\r\nsecret"),
					srv(ms, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
				},
				check: func(t *testing.T, r result) {
					req := r.exchanges[0].Request
					assert.Empty(t, req.Body)
					assert.Equal(t, strings.ToLower(strings.Split(ct, ";")[0]), req.BodyNotKept)
					assert.EqualValues(t, 6, req.BodySize)
				},
			})
		})
	}
}

// TestBodySinkGrowth: a body's buffer grows with the bytes that came (to at
// most four times them, or bodyReserve), up to its declared length (exactly)
// or the limit, and keeps every byte up to the limit whatever the piece sizes.
func TestBodySinkGrowth(t *testing.T) {
	for _, tc := range []struct {
		name            string
		limit, reserve  int
		expected        int64
		total, piece    int
		wantLen, maxCap int
		maxGrows        int // new buffers made
	}{
		{name: "declared, fits the reserve", limit: 100 << 10, reserve: 900, expected: 900, total: 900, piece: 100, wantLen: 900, maxCap: 900, maxGrows: 0},
		{name: "declared, larger than the reserve", limit: 100 << 10, reserve: 4096, expected: 20_000, total: 20_000, piece: 1448, wantLen: 20_000, maxCap: 20_000, maxGrows: 2},
		{name: "declared, over the limit", limit: 10_000, reserve: 4096, expected: 50_000, total: 50_000, piece: 1448, wantLen: 10_000, maxCap: 10_000, maxGrows: 1},
		{name: "chunked, no reserve", limit: 100 << 10, total: 30_000, piece: 1000, wantLen: 30_000, maxCap: 4 * 30_000, maxGrows: 3},
		{name: "chunked, over the limit", limit: 5000, total: 30_000, piece: 700, wantLen: 5000, maxCap: 5000, maxGrows: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var raw []byte
			if tc.reserve > 0 {
				raw = make([]byte, 0, tc.reserve)
			}
			var b bodySink
			b.reset(tc.limit, "", raw, tc.expected, new(bufferPool), false)
			want := bytes.Repeat([]byte("0123456789abcdef"), tc.total/16+1)[:tc.total]
			grows := 0
			for off := 0; off < tc.total; off += tc.piece {
				before := cap(b.raw)
				b.write(want[off:min(off+tc.piece, tc.total)])
				if cap(b.raw) != before {
					grows++
				}
				assert.LessOrEqual(t, cap(b.raw), pooledSize(max(tc.reserve, bodyReserve, 4*len(b.raw))), "at most four times what came")
			}
			assert.LessOrEqual(t, grows, tc.maxGrows, "new buffers")
			assert.Equal(t, want[:tc.wantLen], b.raw)
			assert.LessOrEqual(t, cap(b.raw), pooledSize(tc.maxCap))
			assert.EqualValues(t, tc.total, b.size)
			assert.Equal(t, tc.total > tc.limit, b.cut)
		})
	}
}

// pooledSize is the capacity of a pooled buffer asked for n bytes: its class.
func pooledSize(n int) int {
	if c := classFor(n); c >= 0 {
		return classSize(c)
	}
	return n
}

// Size classes: each n gets the smallest class that holds it, and a buffer
// given back serves only requests its capacity holds.
func TestBufferClasses(t *testing.T) {
	for n := 0; n <= classSize(bufferClasses-1)+1; n += 1 + n/512 {
		c := classFor(n)
		if n > classSize(bufferClasses-1) {
			require.Equal(t, -1, c, n)
			continue
		}
		require.GreaterOrEqual(t, classSize(c), n, n)
		if c > 0 {
			require.Less(t, classSize(c-1), n, n)
		}
		require.LessOrEqual(t, classSize(c), max(64, n+n/4), "waste (%d)", n)
	}
	p := new(bufferPool)
	for _, n := range []int{100, 256, 257, 4096, 4097, 5000, 100_000} {
		b := p.get(n)
		require.GreaterOrEqual(t, cap(b), n)
		p.put(b[: 0 : cap(b)-1]) // now one byte short of its class
		again := p.get(n)
		require.GreaterOrEqual(t, cap(again), n, "a buffer given back is never too small (%d)", n)
	}
}
