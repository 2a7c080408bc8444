package forwarder

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func microBody() []byte {
	var b strings.Builder
	b.WriteString(`{"items":[`)
	for i := 0; b.Len() < 4000; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"name":"item-%d","price":%d.%02d,"tags":["a","b"]}`, 123456+i, i, 17, 5)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

func BenchmarkMicroEscape(b *testing.B) {
	s := string(microBody())
	buf := make([]byte, 0, 16<<10)
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		buf = appendStringJSON(buf[:0], s, false)
	}
}

func BenchmarkMicroRedactJSON(b *testing.B) {
	body := microBody()
	r := NewRedactor(RedactorOptions{})
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		r.RedactBody("application/json", body)
	}
}

func BenchmarkMicroStdEscape(b *testing.B) {
	s := string(microBody())
	b.SetBytes(int64(len(s)))
	for b.Loop() {
		json.Marshal(s)
	}
}
