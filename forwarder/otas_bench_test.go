package forwarder

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/otas/otas-sniff/internal/otasserver"
)

// benchEvents are realistic events: JSON bodies, a dozen headers.
func benchEvents(n int, token string) []*Event {
	evs := make([]*Event, n)
	for i := range evs {
		ev := testEvent(i, token)
		ev.Method = "POST"
		ev.RequestHeaders = `{"Host":"api.example.test","User-Agent":"agent/1.0","Accept":"application/json","Content-Type":"application/json","Authorization":"[REDACTED]","X-OTAS-Agent-Session-Token":"[REDACTED]","X-Request-Id":"` + fmt.Sprintf("%032x", i) + `"}`
		ev.RequestBody = fmt.Sprintf(`{"query":"find orders","customer_id":%d,"limit":20,"filters":{"status":["open","paid"],"since":"2026-01-01"}}`, i)
		ev.ResponseHeaders = `{"Content-Type":"application/json","Content-Length":"412","Date":"Wed, 06 May 2026 07:08:09 GMT","Server":"uvicorn"}`
		ev.ResponseBody = fmt.Sprintf(`{"orders":[{"id":%d,"total":129.5,"currency":"EUR","items":3},{"id":%d,"total":12.0,"currency":"EUR","items":1}],"next":null}`, i*2, i*2+1)
		ev.RequestContentType, ev.ResponseContentType = "application/json", "application/json"
		ev.RequestSizeBytes, ev.ResponseSizeBytes = int64(len(ev.RequestBody)), int64(len(ev.ResponseBody))
		ev.Metadata.EventID = ""
		ev.Metadata.RequestTime = time.Now()
		evs[i] = ev
	}
	return evs
}

type benchRun struct {
	evPerSec, reqPerEv, bytesPerEv float64
}

// uploadRun sends evs through a fresh replay-mode sink and measures it.
func uploadRun(b *testing.B, srv *otasserver.Server, evs []*Event, noBatch, noGzip bool) benchRun {
	b.Helper()
	srv.Reset()
	srv.SetFaults(otasserver.Faults{NoBatch: noBatch})
	s, err := NewOTASSink(context.Background(), OTASConfig{
		AuthURL: srv.URL, IngestURL: srv.URL, SDKKey: testKey, DisableGzip: noGzip,
		FlushInterval: 50 * time.Millisecond, DrainTimeout: time.Minute,
	})
	if err != nil {
		b.Fatal(err)
	}
	wire0 := s.Stats().WireBytes
	start := time.Now()
	for _, ev := range evs {
		if err := s.Write(context.Background(), ev); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(context.Background()); err != nil {
		b.Fatal(err)
	}
	el := time.Since(start)
	st := s.Stats()
	if st.Uploaded != uint64(len(evs)) {
		b.Fatalf("uploaded %d of %d: %v", st.Uploaded, len(evs), st.Dropped)
	}
	n := float64(len(evs))
	reqs := float64(st.BatchRequests + st.EventRequests)
	return benchRun{evPerSec: n / el.Seconds(), reqPerEv: reqs / n, bytesPerEv: float64(st.WireBytes-wire0) / n}
}

// BenchmarkOTASUpload uploads to the in-process server in batch mode (gzip and
// plain) and in per-event mode in the same run, and reports each mode's rate,
// requests and wire bytes per event, and their ratios.
func BenchmarkOTASUpload(b *testing.B) {
	srv := otasserver.New(testKey, testProject)
	defer srv.Close()
	tok := srv.Token("bench")
	batchEvs := benchEvents(50000, tok)
	eachEvs := batchEvs[:5000]
	var gz, plain, each benchRun
	for b.Loop() {
		g := uploadRun(b, srv, batchEvs, false, false)
		p := uploadRun(b, srv, batchEvs, false, true)
		e := uploadRun(b, srv, eachEvs, true, false)
		gz.evPerSec += g.evPerSec
		gz.reqPerEv += g.reqPerEv
		gz.bytesPerEv += g.bytesPerEv
		plain.bytesPerEv += p.bytesPerEv
		plain.evPerSec += p.evPerSec
		each.evPerSec += e.evPerSec
		each.reqPerEv += e.reqPerEv
		each.bytesPerEv += e.bytesPerEv
	}
	n := float64(b.N)
	b.ReportMetric(gz.evPerSec/n, "batch_gzip_events/s")
	b.ReportMetric(plain.evPerSec/n, "batch_plain_events/s")
	b.ReportMetric(each.evPerSec/n, "per_event_events/s")
	b.ReportMetric(gz.reqPerEv/n, "batch_requests/event")
	b.ReportMetric(each.reqPerEv/n, "per_event_requests/event")
	b.ReportMetric(each.reqPerEv/gz.reqPerEv, "request_ratio_per_event/batch")
	b.ReportMetric(gz.evPerSec/each.evPerSec, "speed_ratio_batch/per_event")
	b.ReportMetric(gz.bytesPerEv/n, "batch_gzip_wire_B/event")
	b.ReportMetric(plain.bytesPerEv/n, "batch_plain_wire_B/event")
	b.ReportMetric(each.bytesPerEv/n, "per_event_wire_B/event")
	b.ReportMetric(gz.bytesPerEv/plain.bytesPerEv, "wire_ratio_gzip/plain")
	b.ReportMetric(gz.bytesPerEv/each.bytesPerEv, "wire_ratio_batch_gzip/per_event")
}
