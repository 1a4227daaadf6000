package tokenapi

import (
	"encoding/json"
	"go/build"
	"strings"
	"testing"
)

func TestCodes(t *testing.T) {
	tests := []struct {
		code       Code
		status     int
		retryAfter bool
	}{
		{CodeInvalidRequest, 400, false},
		{CodeForbidden, 403, false},
		{CodeNotFound, 404, false},
		{CodeReauthRequired, 409, false},
		{CodeConfirmationInvalid, 410, false},
		{CodeConnectionConflict, 422, false},
		{CodeInternal, 500, false},
		{CodeProviderError, 502, true},
		{CodeProviderUnavailable, 503, true},
		{CodeUnauthorized, 0, false}, // make dev's answer, not the route's
		{"", 0, false},
	}
	for _, tt := range tests {
		if got := tt.code.Status(); got != tt.status {
			t.Errorf("%q.Status() = %d, want %d", tt.code, got, tt.status)
		}
		if got := tt.code.HasRetryAfter(); got != tt.retryAfter {
			t.Errorf("%q.HasRetryAfter() = %v, want %v", tt.code, got, tt.retryAfter)
		}
	}
	all := Codes()
	if len(all) != 9 {
		t.Errorf("Codes() = %q, want the 9 codes above", all)
	}
	statuses := map[int]Code{}
	for _, c := range all {
		if other, dup := statuses[c.Status()]; dup {
			t.Errorf("%q and %q share status %d: a client could not tell them apart by status", c, other, c.Status())
		}
		statuses[c.Status()] = c
	}
}

func TestErrorBody(t *testing.T) {
	b, err := json.Marshal(Error{Code: CodeNotFound})
	if err != nil || string(b) != `{"error":"not_found"}` {
		t.Fatalf("body %s, %v", b, err)
	}
	var e Error
	if err := json.Unmarshal([]byte(`{"error":"provider_error"}`), &e); err != nil || e.Code != CodeProviderError {
		t.Fatalf("decoded %+v, %v", e, err)
	}
}

func TestTokenBody(t *testing.T) {
	for _, tt := range []struct {
		tok  Token
		want string
	}{
		{Token{AccessToken: "a", TokenType: "Bearer"}, `{"access_token":"a","token_type":"Bearer"}`},
		{Token{AccessToken: "a", TokenType: "Bearer", ExpiresAt: "2027-01-15T08:05:00Z", Scope: "read", Metadata: map[string]string{"user_id": "u1"}},
			`{"access_token":"a","token_type":"Bearer","expires_at":"2027-01-15T08:05:00Z","scope":"read","metadata":{"user_id":"u1"}}`},
	} {
		if b, err := json.Marshal(tt.tok); err != nil || string(b) != tt.want {
			t.Errorf("body %s, want %s (%v)", b, tt.want, err)
		}
	}
}

// The package is imported by every app backend that uses shared/client:
// it must stay free of anything but the standard library.
func TestImportsOnlyTheStandardLibrary(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.Contains(strings.Split(imp, "/")[0], ".") {
			t.Errorf("imports %s", imp)
		}
	}
}
