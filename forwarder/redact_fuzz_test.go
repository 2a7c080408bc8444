package forwarder

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/otas/otas-sniff/httpparse"
)

// fuzzSecret is a credential value that cannot occur by chance and matches
// none of the value patterns, so only the name-based rules can remove it.
const fuzzSecret = "S3KR1T7zq9"

// FuzzRedactSecrets: whatever else an exchange holds (fuzzed header names
// and values, query, form and JSON bodies around them), a credential under a
// sensitive header, query parameter, form field or JSON key never reaches the
// serialised event, and the session token is only ever in Event.SessionToken.
func FuzzRedactSecrets(f *testing.F) {
	f.Add("X-Trace", "abc", "a=1&b=2", `{"x":1}`, "Bearer")
	f.Add("Cookie", "s=1; t=2", "token=&token=x", `[{"Password":["a"]}]`, "")
	f.Add("authorization", "\x00\xff", "%zz=%&;", `{"a":{"secret":{"b":1}}}`, "Basic")
	f.Add("X-Api-Key", "", "a=b#frag", `"\u0070assword"`, "bearer\t")
	f.Fuzz(func(t *testing.T, hname, hvalue, query, jsonExtra, scheme string) {
		for _, s := range []string{hname, hvalue, query, jsonExtra, scheme} {
			if strings.Contains(s, fuzzSecret[:4]) {
				return // the fuzzer put (part of) the secret there itself
			}
		}
		// Only what a parsed request can hold: no CR/LF in header fields, no
		// space or '#' in a request target (it ends at the first space, and
		// clients never send a fragment).
		if strings.ContainsAny(hname+hvalue, "\r\n") || strings.ContainsAny(query, " \r\n#") || strings.ContainsAny(scheme, "\r\n") {
			return
		}
		var body []byte
		if json.Valid([]byte(jsonExtra)) {
			body = []byte(`{"extra":` + jsonExtra + `,"password":"` + fuzzSecret + `","nested":{"api_key":"` + fuzzSecret + `"}}`)
		} else {
			body = []byte(`{"password":"` + fuzzSecret + `"}`)
		}
		req := &httpparse.Message{
			Method: "POST",
			Target: "/p?" + query + "&access_token=" + fuzzSecret + "&" + query,
			Header: httpparse.Header{
				{Name: hname, Value: hvalue},
				{Name: "Authorization", Value: scheme + " " + fuzzSecret},
				{Name: SessionTokenHeader, Value: fuzzSecret + "tok"},
				{Name: "Cookie", Value: "sid=" + fuzzSecret},
				{Name: "Content-Type", Value: "application/json"},
			},
			Body: body,
		}
		form := &httpparse.Message{
			Method: "POST", Target: "/f",
			Header: httpparse.Header{{Name: "Content-Type", Value: "application/x-www-form-urlencoded"}},
			Body:   []byte(query + "&client_secret=" + fuzzSecret + "&" + query),
		}
		resp := &httpparse.Message{
			StatusCode: 200,
			Header: httpparse.Header{
				{Name: "Set-Cookie", Value: "sid=" + fuzzSecret + "; HttpOnly"},
				{Name: hname, Value: hvalue},
				{Name: "Content-Type", Value: "application/json"},
			},
			Body: []byte(`{"refresh_token":"` + fuzzSecret + `"}`),
		}
		fwd := New(Options{})
		for _, ex := range []*httpparse.Exchange{{Request: req, Response: resp}, {Request: form}} {
			ev := fwd.Event(ex)
			out, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(out), fuzzSecret) {
				t.Fatalf("secret in event: %s", out)
			}
		}
	})
}
