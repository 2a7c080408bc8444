package forwarder

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestPathTemplate(t *testing.T) {
	tests := []struct {
		name string
		path string
		want string
	}{
		{"root", "/", "/"},
		{"empty", "", ""},
		{"plain words", "/api/users", "/api/users"},
		{"trailing slash kept", "/api/users/", "/api/users/"},
		{"double slash kept", "/api//users", "/api//users"},
		{"numeric id", "/api/users/42", "/api/users/{id}"},
		{"brief example", "/api/users/42/orders/9f1c0e4a77b24c1e", "/api/users/{id}/orders/{id}"},
		{"uuid lower", "/orders/9f1c0e4a-77b2-4c1e-9a0b-2d9e1f3c5a77", "/orders/{id}"},
		{"uuid upper", "/orders/9F1C0E4A-77B2-4C1E-9A0B-2D9E1F3C5A77/items", "/orders/{id}/items"},
		{"uuid without dashes", "/o/9f1c0e4a77b24c1e9a0b2d9e1f3c5a77", "/o/{id}"},
		{"mongo object id", "/posts/507f1f77bcf86cd799439011", "/posts/{id}"},
		{"sha1", "/commits/3f786850e387550fdab836ed7e6dc881de23001b", "/commits/{id}"},
		{"short commit hash", "/commits/3f786850", "/commits/{id}"},
		{"hex word without digits stays", "/deadbeef", "/deadbeef"},
		{"short hex word stays", "/api/feed/add", "/api/feed/add"},
		{"several ids", "/a/1/b/2/c/3", "/a/{id}/b/{id}/c/{id}"},
		{"v1 kept", "/v1/users/7", "/v1/users/{id}"},
		{"v2 kept", "/api/v2/things", "/api/v2/things"},
		{"upper V10 kept", "/V10/x", "/V10/x"},
		{"dotted version kept", "/api/1.0/users", "/api/1.0/users"},
		{"semver kept", "/packages/lodash/4.17.21", "/packages/lodash/4.17.21"},
		{"v-semver kept", "/sdk/v1.2.3/download", "/sdk/v1.2.3/download"},
		{"file name kept", "/static/app.min.js", "/static/app.min.js"},
		{"favicon kept", "/favicon.ico", "/favicon.ico"},
		{"numeric file stem", "/images/12345.jpg", "/images/{id}.jpg"},
		{"hex file stem", "/blobs/a1b2c3d4e5f6a7b8.json", "/blobs/{id}.json"},
		{"dotfile kept", "/.well-known/openid-configuration", "/.well-known/openid-configuration"},
		{"env file kept", "/.env", "/.env"},
		{"invoice code", "/invoices/INV-2024-0001", "/invoices/{id}"},
		{"date", "/reports/2024-01-15", "/reports/{id}"},
		{"year is a number", "/archive/2024", "/archive/{id}"},
		{"arch name kept", "/downloads/linux/x86_64", "/downloads/linux/x86_64"},
		{"sha256 kept", "/checksums/sha256", "/checksums/sha256"},
		{"oauth2 kept", "/oauth2/callback", "/oauth2/callback"},
		{"2fa kept", "/account/2fa", "/account/2fa"},
		{"resolution kept", "/video/1080p", "/video/1080p"},
		{"base64 kept", "/encode/base64", "/encode/base64"},
		{"username with digits kept", "/users/alice99", "/users/alice99"},
		{"hyphenated words kept", "/api/get-user-profile-settings", "/api/get-user-profile-settings"},
		{"hyphenated words with digit kept", "/auth/oauth2-callback-handler", "/auth/oauth2-callback-handler"},
		{"camelCase kept", "/api/getUserProfileSettings", "/api/getUserProfileSettings"},
		{"snake_case kept", "/api/list_all_customer_accounts", "/api/list_all_customer_accounts"},
		{"long lower word kept", "/internationalization", "/internationalization"},
		{"base64url token", "/share/Xk9fQ2mZ7pL4vR8tW1nB", "/share/{id}"},
		{"base64 token with padding", "/t/aGVsbG8gd29ybGQ1MjM0NQ==", "/t/{id}"},
		{"stripe style id", "/v1/customers/cus_J4kd82Kd9LmnQ2", "/v1/customers/{id}"},
		{"ulid", "/events/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/events/{id}"},
		{"email", "/users/bob@example.com/settings", "/users/{id}/settings"},
		{"percent-encoded email", "/users/bob%40example.com", "/users/{id}"},
		{"query dropped", "/search/42?q=shoes&page=2", "/search/{id}"},
		{"fragment dropped", "/docs/intro#setup", "/docs/intro"},
		{"asterisk left alone", "*", "*"},
		{"authority left alone", "example.com:443", "example.com:443"},
		{"zero", "/items/0", "/items/{id}"},
		{"short mixed code kept", "/go/aB3xZ9", "/go/aB3xZ9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, PathTemplate(tt.path))
		})
	}
}

func TestSetPathTemplate(t *testing.T) {
	ev := &Event{Path: "/api/users/42"}
	SetPathTemplate(ev)
	assert.Equal(t, "/api/users/{id}", ev.Metadata.PathTemplate)
}

func TestIsHighEntropyToken(t *testing.T) {
	tests := []struct {
		token string
		want  bool
	}{
		{"Xk9fQ2mZ7pL4vR8tW1nB", true},
		{"k3j4h5g6f7d8s9a0", true},
		{"getUserProfileSettings", false},
		{"abcdefghijklmnop", false},
		{"aaaaaaaa11111111", false},
		{"short1A", false},
		{"has.dot.inside1234567", false},
	}
	for _, tt := range tests {
		t.Run(tt.token, func(t *testing.T) {
			assert.Equal(t, tt.want, isHighEntropyToken(tt.token))
		})
	}
}

// A path with nothing to template is returned as is, and one with ids is built
// in one allocation: the template is made for every event.
func TestPathTemplateAllocations(t *testing.T) {
	for path, want := range map[string]float64{
		"/api/v1/orders":                              0,
		"/static/app.min.js":                          0,
		"/api/v2.1/users/42876/orders/9f1c0e4a77b2":   1,
		"/img/1234.png?size=2":                        1,
		"/api/v1/users/ada%40example.com/orders/1001": 1,
	} {
		assert.Equal(t, want, testing.AllocsPerRun(100, func() { PathTemplate(path) }), path)
	}
}

func BenchmarkPathTemplate(b *testing.B) {
	paths := []string{"/api/v1/orders", "/api/v1/users/42876/orders", "/api/v2.1/items/9f1c0e4a-77b2-4c1e-9a0b-2d9e1f3c5a77/reviews"}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range paths {
			PathTemplate(p)
		}
	}
}
