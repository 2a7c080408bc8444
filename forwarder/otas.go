package forwarder

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// Defaults of the OTAS sink, as in the Python SDK where it had one.
const (
	DefaultAuthURL       = "http://localhost:8000/"
	DefaultIngestURL     = "http://localhost:8002/"
	DefaultBatchSize     = 100
	DefaultBatchBytes    = 4 << 20
	DefaultFlushInterval = time.Second
	DefaultWorkers       = 4
	DefaultQueueSize     = 10000
	DefaultSpoolMaxBytes = 1 << 30
	DefaultAuthTimeout   = 30 * time.Second
	DefaultDrainTimeout  = 10 * time.Second
)

// Contract paths (docs/otas-contract.md).
const (
	authPath  = "api/project/v1/sdk/backend/key/authenticate/"
	eventPath = "api/v1/backend/log/sdk/"
	batchPath = "api/v1/backend/log/sdk/batch/"
)

// SDKKeyEnv is the environment variable that holds the SDK key.
const SDKKeyEnv = "OTAS_SDK_KEY"

// OTASConfig configures the OTAS sink and Authenticate.
type OTASConfig struct {
	// AuthURL is uasam's base URL, IngestURL brain's.
	AuthURL, IngestURL string
	// SDKKey is the project key; never logged. When empty, NewOTASSink loads it
	// with LoadSDKKey from OTAS_SDK_KEY or SDKKeyFile.
	SDKKey     string
	SDKKeyFile string
	// CAFile is a PEM bundle of extra roots for HTTPS (a private CA).
	CAFile string
	// Insecure allows plain http to hosts other than loopback. It never turns off
	// certificate verification.
	Insecure bool
	// BatchSize and BatchBytes bound one batch; FlushInterval bounds how long an
	// event waits for its batch to fill.
	BatchSize     int
	BatchBytes    int
	FlushInterval time.Duration
	// Workers is how many goroutines upload batches at once.
	Workers int
	// QueueSize bounds the in-memory queue in events.
	QueueSize int
	// SpoolDir, when set, keeps events that cannot be sent now on disk, up to
	// SpoolMaxBytes (oldest dropped beyond).
	SpoolDir      string
	SpoolMaxBytes int64
	// IncludeUntokened uploads events without an agent session token too (the
	// backend will refuse them unless it changes).
	IncludeUntokened bool
	// AuthTimeout is how long a replay waits for the backend to authenticate the
	// key; DrainTimeout how long Close keeps sending.
	AuthTimeout, DrainTimeout time.Duration
	// Live is true for live capture: Write never blocks (events are spooled or
	// dropped and counted when the queue is full), and authentication is retried
	// in the background. A replay blocks instead, so nothing is lost.
	Live bool
	// DisableGzip sends batches uncompressed.
	DisableGzip bool
	// RequestTimeout bounds one HTTP request (30 s when 0).
	RequestTimeout time.Duration
	// RetryInitial and RetryMax bound the exponential backoff (1 s and 30 s when 0).
	RetryInitial, RetryMax time.Duration
	// RetryGiveUp is how long a live capture without a spool keeps retrying one
	// batch before dropping it (5 min when 0).
	RetryGiveUp time.Duration
	// MaxServerErrors is how many 500 answers one event may get while the backend
	// accepts other events before it is dropped as rejected (5 when 0).
	MaxServerErrors int
	Logger          *slog.Logger
}

// String describes the configuration without the key.
func (c OTASConfig) String() string {
	key := "unset"
	if c.SDKKey != "" {
		key = "set"
	}
	return fmt.Sprintf("otas(auth=%s ingest=%s key=%s spool=%q batch=%d workers=%d live=%t)",
		c.AuthURL, c.IngestURL, key, c.SpoolDir, c.BatchSize, c.Workers, c.Live)
}

// LogValue keeps the key out of structured logs.
func (c OTASConfig) LogValue() slog.Value { return slog.StringValue(c.String()) }

// withDefaults fills zero fields.
func (c OTASConfig) withDefaults() OTASConfig {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.AuthURL, DefaultAuthURL)
	def(&c.IngestURL, DefaultIngestURL)
	pos := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	pos(&c.BatchSize, DefaultBatchSize)
	pos(&c.BatchBytes, DefaultBatchBytes)
	pos(&c.Workers, DefaultWorkers)
	pos(&c.QueueSize, DefaultQueueSize)
	pos(&c.MaxServerErrors, 5)
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	dur(&c.FlushInterval, DefaultFlushInterval)
	dur(&c.AuthTimeout, DefaultAuthTimeout)
	dur(&c.DrainTimeout, DefaultDrainTimeout)
	dur(&c.RequestTimeout, 30*time.Second)
	dur(&c.RetryInitial, time.Second)
	dur(&c.RetryMax, 30*time.Second)
	dur(&c.RetryGiveUp, 5*time.Minute)
	if c.SpoolMaxBytes <= 0 {
		c.SpoolMaxBytes = DefaultSpoolMaxBytes
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// OTASConfigError is a configuration problem: no key, a malformed key, a bad URL
// or CA file. Its message says how to fix it and never contains the key.
type OTASConfigError struct {
	Msg string
	Err error
}

func (e *OTASConfigError) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *OTASConfigError) Unwrap() error { return e.Err }

// OTASAuthError says the key was rejected (Status 401 or 403, Reason from the
// server) or the backend could not be reached (Status 0 or 5xx, Err set).
type OTASAuthError struct {
	Status int
	Reason string
	Err    error
}

func (e *OTASAuthError) Error() string {
	switch {
	case e.Rejected():
		return fmt.Sprintf("OTAS authentication failed: the SDK key was rejected (HTTP %d: %s)", e.Status, e.Reason)
	case e.Status != 0:
		return fmt.Sprintf("OTAS authentication failed: uasam answered HTTP %d (%s)", e.Status, e.Reason)
	default:
		return fmt.Sprintf("OTAS authentication failed: backend unreachable: %v", e.Err)
	}
}

func (e *OTASAuthError) Unwrap() error { return e.Err }

// Rejected is true when the server refused the key itself (not a fault or an
// outage): retrying cannot help.
func (e *OTASAuthError) Rejected() bool { return e.Status == 401 || e.Status == 403 }

// noKeyMsg is the Python SDK's configuration error, word for word where it can be.
const noKeyMsg = "OTAS_SDK_KEY environment variable is not set.\nExport it before starting otas-sniff:\n  export OTAS_SDK_KEY='otas_...'\nor pass --sdk-key-file PATH"

// LoadSDKKey returns the SDK key from keyFile when given, else from the
// OTAS_SDK_KEY variable read with env, and checks its form otas_<prefix>_<secret>.
func LoadSDKKey(env func(string) string, keyFile string) (string, error) {
	var key string
	if keyFile != "" {
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return "", &OTASConfigError{Msg: "read --sdk-key-file", Err: err}
		}
		key = strings.TrimSpace(string(b))
		if key == "" {
			return "", &OTASConfigError{Msg: fmt.Sprintf("--sdk-key-file %s is empty", keyFile)}
		}
	} else if env != nil {
		key = strings.TrimSpace(env(SDKKeyEnv))
	}
	if key == "" {
		return "", &OTASConfigError{Msg: noKeyMsg}
	}
	if err := CheckSDKKey(key); err != nil {
		return "", err
	}
	return key, nil
}

// CheckSDKKey checks a key's form locally, as uasam does: three non-empty parts
// split on the first two underscores, the first "otas".
func CheckSDKKey(key string) error {
	parts := strings.SplitN(key, "_", 3)
	if len(parts) != 3 || parts[0] != "otas" || parts[1] == "" || parts[2] == "" {
		return &OTASConfigError{Msg: "the OTAS SDK key is malformed: expected the form otas_<prefix>_<secret> (check OTAS_SDK_KEY or --sdk-key-file)"}
	}
	for _, c := range key {
		if c <= ' ' || c == 0x7f {
			return &OTASConfigError{Msg: "the OTAS SDK key contains spaces or control characters"}
		}
	}
	return nil
}

// Project is the OTAS project a key belongs to.
type Project struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description"`
}

// client is the HTTP side shared by Authenticate and the sink.
type client struct {
	cfg  OTASConfig
	http *http.Client
	// Endpoint URLs, with the trailing slash Django expects.
	authURL, eventURL, batchURL string
	wire                        atomic.Int64 // bytes written to connections
	reqs                        atomic.Int64
}

// newClient checks URLs and TLS settings and builds a client whose connections
// are reused across requests.
func newClient(cfg OTASConfig) (*client, error) {
	authBase, err := checkBaseURL("auth", cfg.AuthURL, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	ingestBase, err := checkBaseURL("ingest", cfg.IngestURL, cfg.Insecure)
	if err != nil {
		return nil, err
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, &OTASConfigError{Msg: "read --ca-file", Err: err}
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, &OTASConfigError{Msg: fmt.Sprintf("--ca-file %s holds no PEM certificate", cfg.CAFile)}
		}
		tlsCfg.RootCAs = pool
	}
	c := &client{cfg: cfg}
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, n: &c.wire}, nil
		},
		TLSClientConfig:     tlsCfg,
		ForceAttemptHTTP2:   true,
		MaxIdleConns:        cfg.Workers*4 + 4,
		MaxIdleConnsPerHost: cfg.Workers*4 + 4,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		// Bodies are gzipped by the sender itself; answers are small.
		DisableCompression: true,
	}
	c.http = &http.Client{Transport: tr, Timeout: cfg.RequestTimeout}
	c.authURL = slash(authBase.JoinPath(authPath))
	c.eventURL = slash(ingestBase.JoinPath(eventPath))
	c.batchURL = slash(ingestBase.JoinPath(batchPath))
	return c, nil
}

// slash keeps the trailing slash the contract's paths end with.
func slash(u *url.URL) string {
	s := u.String()
	if !strings.HasSuffix(s, "/") {
		s += "/"
	}
	return s
}

// checkBaseURL accepts http(s) URLs, plain http only to loopback unless insecure.
func checkBaseURL(which, raw string, insecure bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, &OTASConfigError{Msg: fmt.Sprintf("--%s-url %q is not an http:// or https:// URL", which, raw)}
	}
	if u.Scheme == "http" && !insecure && !isLoopback(u.Hostname()) {
		return nil, &OTASConfigError{Msg: fmt.Sprintf("--%s-url %s uses plain http to a host that is not loopback: the SDK key would cross the network in clear text; use https, or pass --insecure to allow it", which, u.Redacted())}
	}
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.n.Add(int64(n))
	return n, err
}

// Authenticate checks cfg's key (loading it as NewOTASSink does when unset)
// against uasam and returns its project. A refused key is an *OTASAuthError with
// Rejected() true; an outage is an *OTASAuthError with Status 0 or 5xx.
func Authenticate(ctx context.Context, cfg OTASConfig) (Project, error) {
	cfg = cfg.withDefaults()
	if cfg.SDKKey == "" {
		key, err := LoadSDKKey(os.Getenv, cfg.SDKKeyFile)
		if err != nil {
			return Project{}, err
		}
		cfg.SDKKey = key
	} else if err := CheckSDKKey(cfg.SDKKey); err != nil {
		return Project{}, err
	}
	c, err := newClient(cfg)
	if err != nil {
		return Project{}, err
	}
	defer c.http.CloseIdleConnections()
	return c.authenticate(ctx)
}

func (c *client) authenticate(ctx context.Context) (Project, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.authURL, nil)
	if err != nil {
		return Project{}, &OTASConfigError{Msg: "build authentication request", Err: err}
	}
	req.Header.Set("X-OTAS-SDK-KEY", c.cfg.SDKKey)
	c.reqs.Add(1)
	resp, err := c.http.Do(req)
	if err != nil {
		return Project{}, &OTASAuthError{Err: scrub(err, c.cfg.SDKKey)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(body, &e)
		if e.Error == "" {
			e.Error = http.StatusText(resp.StatusCode)
		}
		return Project{}, &OTASAuthError{Status: resp.StatusCode, Reason: scrubString(e.Error, c.cfg.SDKKey)}
	}
	// The server sends lower-case keys, the SDK's README capitalised ones.
	var ok map[string]json.RawMessage
	if err := json.Unmarshal(body, &ok); err != nil {
		return Project{}, &OTASAuthError{Status: resp.StatusCode, Reason: "answer is not JSON", Err: err}
	}
	var inner map[string]json.RawMessage
	for k, v := range ok {
		if strings.EqualFold(k, "response") {
			_ = json.Unmarshal(v, &inner)
		}
	}
	var p Project
	for k, v := range inner {
		if strings.EqualFold(k, "project") {
			_ = json.Unmarshal(v, &p)
		}
	}
	if p.ID == "" {
		return Project{}, &OTASAuthError{Status: resp.StatusCode, Reason: "answer carries no project id"}
	}
	return p, nil
}

// scrub keeps secrets out of an error that may quote a request.
func scrub(err error, secrets ...string) error {
	msg := err.Error()
	red := scrubString(msg, secrets...)
	if red == msg {
		return err
	}
	return errors.New(red)
}

func scrubString(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, Redacted)
		}
	}
	return s
}

// readSmall reads at most 1 MiB of an answer.
func readSmall(r io.Reader) []byte {
	var b bytes.Buffer
	_, _ = io.Copy(&b, io.LimitReader(r, 1<<20))
	return b.Bytes()
}
