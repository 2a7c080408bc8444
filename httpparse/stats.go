package httpparse

import "sync/atomic"

// Stats counts what the parser saw, summed over every connection.
type Stats struct {
	// Streams is the number of connections handed to the parser.
	Streams uint64
	// Requests and Responses count complete messages (interim responses included).
	Requests  uint64
	Responses uint64
	// Exchanges counts exchanges handed on, with or without a response.
	Exchanges uint64
	// UnmatchedRequests counts exchanges handed on without a final response.
	UnmatchedRequests uint64
	// UnmatchedResponses counts final responses with no request to pair with;
	// they are not handed on.
	UnmatchedResponses uint64
	// ParseErrors counts messages dropped because their framing was invalid.
	ParseErrors uint64
	// SkippedBytes counts bytes passed over without being parsed as part of a
	// message, the same however TCP cut the stream:
	//   - bytes scanned for a message start that holds none (garbage, a stream
	//     captured mid-message, what follows a gap or an invalid message), counted
	//     when the next start is found or when a gap, a protocol switch or the
	//     end of the connection ends the scan;
	//   - a partial head or line cut by a gap;
	//   - the first MaxHeaderBytes bytes of a header block or trailer section
	//     that does not end within them, and the first 4 KiB + 1 bytes of a
	//     chunk-size line longer than 4 KiB: they are dropped unread, and the
	//     bytes after them are scanned as above.
	// A head that never ends thus counts all of its bytes up to the gap or the
	// end of the connection, unless a message start turns up in it after its
	// first MaxHeaderBytes bytes.
	SkippedBytes uint64
	// OversizedHeaders counts messages skipped because their header block was
	// larger than Options.MaxHeaderBytes or had more than Options.MaxHeaders fields.
	OversizedHeaders uint64
	// Upgrades counts connections that switched protocol (101, CONNECT 2xx).
	Upgrades uint64
	// GapsInMessages counts capture gaps that fell inside a message.
	GapsInMessages uint64
	// NotHTTP counts connections on which no HTTP message was found.
	NotHTTP uint64
	// TLSStreams and HTTP2Streams count connections recognised as TLS or as
	// HTTP/2 with prior knowledge, which are not parsed further.
	TLSStreams   uint64
	HTTP2Streams uint64
	// LenientVersions counts messages whose version was accepted leniently
	// (e.g. "http/1.1").
	LenientVersions uint64
	// DecodeErrors counts bodies whose Content-Encoding could not be decoded.
	DecodeErrors uint64
}

// counters are the live, atomically updated form of Stats.
type counters struct {
	streams, requests, responses, exchanges              atomic.Uint64
	unmatchedRequests, unmatchedResponses, parseErrors   atomic.Uint64
	skippedBytes, oversizedHeaders, upgrades, gapsInMsgs atomic.Uint64
	notHTTP, tlsStreams, http2Streams, lenientVersions   atomic.Uint64
	decodeErrors                                         atomic.Uint64
}

// Snapshot reads every counter; each is read atomically, the set is not.
func (c *counters) Snapshot() Stats {
	return Stats{
		Streams:            c.streams.Load(),
		Requests:           c.requests.Load(),
		Responses:          c.responses.Load(),
		Exchanges:          c.exchanges.Load(),
		UnmatchedRequests:  c.unmatchedRequests.Load(),
		UnmatchedResponses: c.unmatchedResponses.Load(),
		ParseErrors:        c.parseErrors.Load(),
		SkippedBytes:       c.skippedBytes.Load(),
		OversizedHeaders:   c.oversizedHeaders.Load(),
		Upgrades:           c.upgrades.Load(),
		GapsInMessages:     c.gapsInMsgs.Load(),
		NotHTTP:            c.notHTTP.Load(),
		TLSStreams:         c.tlsStreams.Load(),
		HTTP2Streams:       c.http2Streams.Load(),
		LenientVersions:    c.lenientVersions.Load(),
		DecodeErrors:       c.decodeErrors.Load(),
	}
}

// Add returns the sum of two snapshots (of the factories of parallel workers).
func (s Stats) Add(o Stats) Stats {
	return Stats{
		Streams: s.Streams + o.Streams, Requests: s.Requests + o.Requests, Responses: s.Responses + o.Responses,
		Exchanges: s.Exchanges + o.Exchanges, UnmatchedRequests: s.UnmatchedRequests + o.UnmatchedRequests,
		UnmatchedResponses: s.UnmatchedResponses + o.UnmatchedResponses, ParseErrors: s.ParseErrors + o.ParseErrors,
		SkippedBytes: s.SkippedBytes + o.SkippedBytes, OversizedHeaders: s.OversizedHeaders + o.OversizedHeaders,
		Upgrades: s.Upgrades + o.Upgrades, GapsInMessages: s.GapsInMessages + o.GapsInMessages,
		NotHTTP: s.NotHTTP + o.NotHTTP, TLSStreams: s.TLSStreams + o.TLSStreams, HTTP2Streams: s.HTTP2Streams + o.HTTP2Streams,
		LenientVersions: s.LenientVersions + o.LenientVersions, DecodeErrors: s.DecodeErrors + o.DecodeErrors,
	}
}
