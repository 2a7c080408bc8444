package doctor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/otas/otas-sniff/forwarder"
)

// batchPath is the sniffer's batch endpoint (docs/otas-contract.md, section 3).
const batchPath = "api/v1/backend/log/sdk/batch/"

// OTASOptions says where OTAS is; nil Options.OTAS means the run does not
// upload to OTAS (-o is not otas) and its checks are skipped.
type OTASOptions struct {
	// Config holds AuthURL, IngestURL, SDKKeyFile, CAFile and Insecure.
	Config forwarder.OTASConfig
	// Getenv reads OTAS_SDK_KEY; os.Getenv when nil.
	Getenv func(string) string
	// Timeout bounds each request to the backend.
	Timeout time.Duration
}

// otasChecks checks the key, authentication, the ingestion endpoint and the
// session tokens of the captured requests.
func otasChecks(ctx context.Context, o *OTASOptions, an *analyzer) []Check {
	if o == nil {
		return []Check{{Name: "otas", Status: Skip, Reason: "not checked: no -o otas output (events go to local files only)"}}
	}
	getenv := o.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	cfg := o.Config
	key, keyErr := forwarder.LoadSDKKey(getenv, cfg.SDKKeyFile)
	keyCheck := Check{Name: "otas key"}
	switch {
	case keyErr == nil:
		prefix, _, _ := strings.Cut(strings.TrimPrefix(key, "otas_"), "_")
		keyCheck.Status, keyCheck.Reason = OK, fmt.Sprintf("well formed: otas_%s_… (%d characters)", prefix, len(key))
	case cfg.SDKKeyFile == "" && strings.TrimSpace(getenv(forwarder.SDKKeyEnv)) == "":
		keyCheck.Status, keyCheck.Blocking = Warn, true
		keyCheck.Reason = "OTAS_SDK_KEY is not set: nothing can be uploaded"
		keyCheck.Next = "export OTAS_SDK_KEY='otas_<prefix>_<secret>'   (or --sdk-key-file PATH)"
	default:
		keyCheck.Status, keyCheck.Reason = Fail, firstLine(keyErr.Error())
		keyCheck.Next = "copy the key again from the OTAS project settings: export OTAS_SDK_KEY='otas_<prefix>_<secret>'"
	}
	checks := []Check{keyCheck}
	var auth Check
	if keyErr != nil {
		auth = Check{Name: "otas auth", Status: Skip, Reason: "not checked: no usable key"}
		checks = append(checks, auth, Check{Name: "otas ingest", Status: Skip, Reason: "not checked: no usable key"})
	} else {
		cfg.SDKKey = key
		auth = authCheck(ctx, cfg, o.Timeout)
		checks = append(checks, auth)
		if auth.Status == Fail && auth.Data["rejected"] == true {
			checks = append(checks, Check{Name: "otas ingest", Status: Skip, Reason: "not checked: the key was rejected"})
		} else {
			checks = append(checks, ingestCheck(ctx, cfg, o.Timeout))
		}
	}
	return append(checks, tokenCheck(an))
}

// authCheck asks uasam about the key, after timing a bare TCP connect to it:
// the connect is the network round trip, the rest is the server's key hash.
func authCheck(ctx context.Context, cfg forwarder.OTASConfig, timeout time.Duration) Check {
	c := Check{Name: "otas auth", Data: map[string]any{"url": cfg.AuthURL}}
	rtt, dialErr := connectTime(ctx, cfg.AuthURL, timeout)
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cfg.RequestTimeout = timeout
	start := time.Now()
	p, err := forwarder.Authenticate(actx, cfg)
	took := time.Since(start)
	var ae *forwarder.OTASAuthError
	var ce *forwarder.OTASConfigError
	switch {
	case err == nil:
		c.Status = OK
		c.Reason = fmt.Sprintf("key accepted for project %q (%s); round trip %s, authentication %s", p.Name, p.ID, ms(rtt), ms(took))
		c.Data["project_id"], c.Data["rtt_ms"], c.Data["auth_ms"] = p.ID, msf(rtt), msf(took)
	case errors.As(err, &ae) && ae.Rejected():
		c.Status, c.Data["rejected"] = Fail, true
		c.Reason = fmt.Sprintf("the backend rejects the key (HTTP %d: %s)", ae.Status, ae.Reason)
		c.Next = "check the key in the OTAS project settings and export the current one: export OTAS_SDK_KEY='otas_...'; then: otas-sniff auth"
	case errors.As(err, &ce):
		c.Status, c.Reason = Fail, firstLine(ce.Error())
		c.Next = "fix --auth-url / OTAS_AUTH_URL (https://...), or pass --insecure for plain http inside a trusted network"
	case dialErr != nil:
		c.Status = Fail
		c.Reason = fmt.Sprintf("cannot reach the OTAS key service at %s: %v", cfg.AuthURL, dialErr)
		c.Next = fmt.Sprintf("check --auth-url / OTAS_AUTH_URL and the route to it: curl -sS -X POST %s", joinURL(cfg.AuthURL, "api/project/v1/sdk/backend/key/authenticate/"))
	default:
		c.Status = Fail
		c.Reason = firstLine(err.Error())
		c.Next = fmt.Sprintf("the backend answers but fails: check its logs, or retry later; test with: otas-sniff auth --auth-url %s", cfg.AuthURL)
	}
	return c
}

// ingestCheck probes the batch endpoint with an empty batch. An empty POST is
// the only probe whose answer tells everything at no cost: brain checks the
// key, a 2xx proves the endpoint exists, 404/405 that it does not (the
// sniffer's fallback signal), and zero events store nothing. OPTIONS would be
// answered 405 by an endpoint that exists too, and checks no key.
func ingestCheck(ctx context.Context, cfg forwarder.OTASConfig, timeout time.Duration) Check {
	target := joinURL(cfg.IngestURL, batchPath)
	c := Check{Name: "otas ingest", Data: map[string]any{"url": target, "probe": `POST {"events":[]}`}}
	hc, err := probeClient(cfg, timeout)
	if err != nil {
		c.Status, c.Reason = Fail, err.Error()
		c.Next = "fix --ingest-url / OTAS_INGEST_URL (https://...), or pass --insecure for plain http inside a trusted network"
		return c
	}
	defer hc.CloseIdleConnections()
	rtt, dialErr := connectTime(ctx, cfg.IngestURL, timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, strings.NewReader(`{"events":[]}`))
	if err != nil {
		c.Status, c.Reason = Fail, fmt.Sprintf("--ingest-url %q: %v", cfg.IngestURL, err)
		c.Next = "fix --ingest-url / OTAS_INGEST_URL"
		return c
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-OTAS-SDK-KEY", cfg.SDKKey)
	start := time.Now()
	resp, err := hc.Do(req)
	took := time.Since(start)
	if err != nil {
		c.Status = Fail
		if dialErr != nil {
			err = dialErr
		}
		c.Reason = fmt.Sprintf("cannot reach the OTAS ingestion service at %s: %v", cfg.IngestURL, scrub(err, cfg.SDKKey))
		c.Next = fmt.Sprintf("check --ingest-url / OTAS_INGEST_URL and the route to it: curl -sS -X POST %s", target)
		return c
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var answer struct {
		Status      int    `json:"status"`
		Description string `json:"status_description"`
	}
	_ = json.Unmarshal(body, &answer)
	c.Data["http_status"], c.Data["rtt_ms"], c.Data["probe_ms"] = resp.StatusCode, msf(rtt), msf(took)
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		c.Status = OK
		c.Reason = fmt.Sprintf("batch endpoint present (empty batch answered HTTP %d, nothing stored); round trip %s, answer %s", code, ms(rtt), ms(took))
	case code == http.StatusNotFound || code == http.StatusMethodNotAllowed:
		c.Status = Warn
		c.Reason = fmt.Sprintf("no batch endpoint (HTTP %d): events go one request each, and each costs the backend a key check (about 10 events/s per backend core)", code)
		c.Next = "upgrade the OTAS ingestion service (brain) to one with POST /api/v1/backend/log/sdk/batch/; until then expect slower uploads"
	case code == http.StatusUnauthorized:
		c.Status = Fail
		c.Reason = fmt.Sprintf("the ingestion service refuses the key (HTTP 401 %s) although the key service accepted it: brain cannot reach uasam, or they belong to different deployments", answer.Description)
		c.Next = "check that --ingest-url and --auth-url name the same OTAS deployment, and brain's connection to uasam"
	case code == http.StatusBadRequest || code == http.StatusRequestEntityTooLarge:
		c.Status = OK
		c.Reason = fmt.Sprintf("batch endpoint present (HTTP %d to an empty batch); round trip %s", code, ms(rtt))
	default:
		c.Status = Fail
		c.Reason = fmt.Sprintf("the ingestion service fails (HTTP %d %s)", code, answer.Description)
		c.Next = "check the OTAS backend's logs; otas-sniff retries and spools meanwhile (--spool-dir)"
	}
	return c
}

// tokenCheck counts the captured requests that carry an agent session token:
// the backend refuses events without one, so they are not uploaded.
func tokenCheck(an *analyzer) Check {
	c := Check{Name: "session tokens"}
	if an == nil || an.requests == 0 {
		c.Status, c.Reason = Skip, "not checked: no HTTP requests captured"
		return c
	}
	c.Data = map[string]any{"requests": an.requests, "with_token": an.withToken}
	next := "make the AI agents send the X-OTAS-Agent-Session-Token header on every call (the OTAS agent SDK adds it); plain traffic is not uploaded"
	switch {
	case an.withToken == an.requests:
		c.Status = OK
		c.Reason = fmt.Sprintf("all %s carry X-OTAS-Agent-Session-Token", count(an.requests, "request", "requests"))
	case an.withToken == 0:
		c.Status, c.Next = Fail, next
		c.Reason = fmt.Sprintf("none of %s carries X-OTAS-Agent-Session-Token: the backend refuses such events, so none is uploaded", count(an.requests, "request", "requests"))
	default:
		c.Status, c.Next = Warn, next
		c.Reason = fmt.Sprintf("%d of %s carry X-OTAS-Agent-Session-Token; the other %d are not uploaded", an.withToken, count(an.requests, "request", "requests"), an.requests-an.withToken)
	}
	return c
}

// probeClient is an HTTP client with the sink's rules: extra roots from
// --ca-file, plain http only to loopback unless --insecure.
func probeClient(cfg forwarder.OTASConfig, timeout time.Duration) (*http.Client, error) {
	u, err := url.Parse(cfg.IngestURL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("--ingest-url %q is not an http:// or https:// URL", cfg.IngestURL)
	}
	if u.Scheme == "http" && !cfg.Insecure && !isLoopback(u.Hostname()) {
		return nil, fmt.Errorf("--ingest-url %s uses plain http to a host that is not loopback: the SDK key would cross the network in clear text", u.Redacted())
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read --ca-file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		Proxy: http.ProxyFromEnvironment, TLSClientConfig: tlsCfg, ForceAttemptHTTP2: true,
	}}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// connectTime times a TCP connect to the URL's host: the network round trip,
// free of the server's work.
func connectTime(ctx context.Context, raw string, timeout time.Duration) (time.Duration, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return 0, fmt.Errorf("%q is not a URL", raw)
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"https": "443"}[u.Scheme]
		if port == "" {
			port = "80"
		}
	}
	d := net.Dialer{Timeout: timeout}
	start := time.Now()
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	took := time.Since(start)
	conn.Close()
	return took, nil
}

func joinURL(base, path string) string {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	return base + path
}

// scrub keeps the key out of messages that may quote a request.
func scrub(err error, key string) string {
	if key == "" {
		return err.Error()
	}
	return strings.ReplaceAll(err.Error(), key, "[REDACTED]")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func ms(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%.2f ms", msf(d))
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1f ms", msf(d))
	}
	return fmt.Sprintf("%.0f ms", msf(d))
}

func msf(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
