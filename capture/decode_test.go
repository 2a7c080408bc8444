package capture

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/otas/otas-sniff/internal/pcapgen"
)

// records reads every record of a pcap into memory.
func records(t testing.TB, data []byte) ([][]byte, []gopacket.CaptureInfo, layers.LinkType) {
	r, err := pcapgo.NewReader(bytes.NewReader(data))
	require.NoError(t, err)
	var pkts [][]byte
	var cis []gopacket.CaptureInfo
	for {
		d, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return pkts, cis, r.LinkType()
		}
		require.NoError(t, err)
		pkts, cis = append(pkts, d), append(cis, ci)
	}
}

func TestDecodeAllocatesNothing(t *testing.T) {
	for _, lt := range []layers.LinkType{layers.LinkTypeEthernet, layers.LinkTypeLinuxSLL2, layers.LinkTypeRaw} {
		t.Run(lt.String(), func(t *testing.T) {
			w := pcapgen.New(pcapgen.Options{LinkType: lt, VLANs: nil})
			c := w.Conn(client6, server6, pcapgen.IPv6ExtensionHeaders())
			exchange(c)
			exchange(w.Conn(client4, server4))
			pkts, cis, link := records(t, w.Bytes())
			d := NewDecoder()
			i := 0
			allocs := testing.AllocsPerRun(1000, func() {
				if _, ok := d.Decode(pkts[i%len(pkts)], cis[i%len(pkts)], link); !ok {
					t.Fatalf("packet %d not decoded", i%len(pkts))
				}
				i++
			})
			assert.Zero(t, allocs)
		})
	}
}

// benchCapture writes a capture of many short HTTP exchanges and returns its
// path and number of packets.
func benchCapture(b *testing.B) (string, int) {
	w := pcapgen.New(pcapgen.Options{Step: time.Microsecond})
	body := bytes.Repeat([]byte("x"), 3000)
	for i := range 500 {
		c := w.Conn(client4, netipPort(server4, uint16(8000+i%10)))
		c.Handshake()
		c.Client([]byte(request))
		c.Server(body)
		c.Close()
	}
	path := filepath.Join(b.TempDir(), "bench.pcap")
	require.NoError(b, os.WriteFile(path, w.Bytes(), 0o644))
	return path, w.Packets()
}

// BenchmarkDecode reads and decodes a generated capture through OpenFiles;
// one op is one TCP segment handed on.
func BenchmarkDecode(b *testing.B) {
	path, _ := benchCapture(b)
	src, err := OpenFiles([]string{path}, FileOptions{})
	require.NoError(b, err)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		_, err := src.Next(ctx)
		if errors.Is(err, io.EOF) {
			b.StopTimer()
			src.Close()
			src, err = OpenFiles([]string{path}, FileOptions{})
			require.NoError(b, err)
			b.StartTimer()
			_, err = src.Next(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
	src.Close()
}

// BenchmarkReadOnly is the baseline: the same file's records read with
// pcapgo and nothing decoded.
func BenchmarkReadOnly(b *testing.B) {
	path, _ := benchCapture(b)
	open := func() (*os.File, *pcapgo.Reader) {
		f, err := os.Open(path)
		require.NoError(b, err)
		r, err := pcapgo.NewReader(bufio.NewReaderSize(f, readBufferSize))
		require.NoError(b, err)
		return f, r
	}
	f, r := open()
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		_, _, err := r.ZeroCopyReadPacketData()
		if errors.Is(err, io.EOF) {
			b.StopTimer()
			f.Close()
			f, r = open()
			b.StartTimer()
			_, _, err = r.ZeroCopyReadPacketData()
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "packets/s")
	f.Close()
}

func netipPort(ap netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr(), port)
}
