package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/syncbuf"
	"github.com/oauthbroker/oauthbroker/shared/broker"
)

// brokerKinds returns the value of every broker.Kind constant declared in
// package broker's source, so that a kind added there without a status
// here fails TestEveryKindHasAStatus.
func brokerKinds(t *testing.T) map[broker.Kind]string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("..", "broker", "*.go"))
	if err != nil || len(files) == 0 {
		t.Fatalf("broker sources: %v, %d files", err, len(files))
	}
	kinds := map[broker.Kind]string{}
	fset := gotoken.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != gotoken.CONST {
				continue
			}
			typed := false // the type a spec without one inherits
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if vs.Type != nil {
					id, ok := vs.Type.(*ast.Ident)
					typed = ok && id.Name == "Kind"
				} else if len(vs.Values) > 0 {
					typed = false
				}
				if !typed {
					continue
				}
				for i, name := range vs.Names {
					lit, ok := valueAt(vs, i).(*ast.BasicLit)
					if !ok || lit.Kind != gotoken.STRING {
						t.Fatalf("%s: broker.%s is not a string literal; this test reads kinds as such", fset.Position(name.Pos()), name.Name)
					}
					v, _ := strconv.Unquote(lit.Value)
					kinds[broker.Kind(v)] = name.Name
				}
			}
		}
	}
	if len(kinds) == 0 {
		t.Fatal("no broker.Kind constants found")
	}
	return kinds
}

func valueAt(vs *ast.ValueSpec, i int) ast.Expr {
	if i < len(vs.Values) {
		return vs.Values[i]
	}
	return nil
}

// Every kind of failure the broker declares has its HTTP status, and the
// table holds nothing else.
func TestEveryKindHasAStatus(t *testing.T) {
	kinds := brokerKinds(t)
	for k, name := range kinds {
		if _, ok := statuses[k]; !ok {
			t.Errorf("broker.%s (%q) has no HTTP status in statuses", name, k)
		}
	}
	for k := range statuses {
		if _, ok := kinds[k]; !ok {
			t.Errorf("statuses maps %q, which is no broker.Kind", k)
		}
	}
}

// How each failure is answered: the status of its kind on a page or, for a
// program, with its code as JSON; a redirect whatever its kind when it goes
// back to the app; 503 for an error that is no broker.Error. The one
// "connect rejected" line reports the status answered, at error level
// from 500 up.
func TestFailureAnswers(t *testing.T) {
	page := func(k broker.Kind) error {
		return &broker.Error{Kind: k, Code: "c", Cause: "x", Message: "Fixed text."}
	}
	program := func(k broker.Kind, code broker.Code) error {
		return &broker.Error{Kind: k, Code: code, Cause: "x", Program: true}
	}
	tests := []struct {
		name   string
		err    error
		status int
		// body is the JSON body of a program's answer; location the
		// redirect's; otherwise a page shows message.
		body, location, message string
		level                   string
	}{
		{"unknown provider", page(broker.KindNotFound), 404, "", "", "Fixed text.", "INFO"},
		{"malformed", page(broker.KindMalformed), 400, "", "", "Fixed text.", "INFO"},
		{"refused", page(broker.KindForbidden), 403, "", "", "Fixed text.", "INFO"},
		{"unavailable", page(broker.KindUnavailable), 503, "", "", "Fixed text.", "ERROR"},
		{"a kind without a status", page("novel"), 503, "", "", "Fixed text.", "ERROR"},
		{"not a broker error", errors.New("boom"), 503, "", "", broker.UnavailableMessage, "ERROR"},
		{"program: provider refused", program(broker.KindProviderRefused, broker.CodeProviderError), 502, `{"error":"provider_error"}`, "", "", "ERROR"},
		{"program: provider unavailable", program(broker.KindProviderUnavailable, broker.CodeProviderUnavailable), 502, `{"error":"provider_unavailable"}`, "", "", "ERROR"},
		{"program: authorization failed", program(broker.KindAuthorizationFailed, broker.CodeAccessDenied), 400, `{"error":"access_denied"}`, "", "", "INFO"},
		{"program: malformed", program(broker.KindMalformed, broker.CodeProviderError), 400, `{"error":"provider_error"}`, "", "", "INFO"},
		{"program: conflict", program(broker.KindConflict, broker.CodeConnectionConflict), 409, `{"error":"connection_conflict"}`, "", "", "INFO"},
		{"program: unavailable", program(broker.KindUnavailable, broker.CodeServerError), 503, `{"error":"server_error"}`, "", "", "ERROR"},
		{"back to the app", &broker.Error{Kind: broker.KindProviderUnavailable, Code: broker.CodeProviderUnavailable, Cause: "x",
			ReturnURL: "https://app.example.com/done?error=provider_unavailable"}, 302, "", "https://app.example.com/done?error=provider_unavailable", "", "INFO"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			logs := &syncbuf.Buffer{}
			b := &broker.Broker{Log: slog.New(slog.NewJSONHandler(logs, nil))}
			resp := failure(context.Background(), b, "connect", tt.err)
			if resp.StatusCode != tt.status || resp.Headers["Cache-Control"] != "no-store" {
				t.Fatalf("answered %d %v, want %d", resp.StatusCode, resp.Headers, tt.status)
			}
			switch {
			case tt.location != "":
				if resp.Headers["Location"] != tt.location || resp.Body != "" {
					t.Errorf("redirect to %q with body %q", resp.Headers["Location"], resp.Body)
				}
			case tt.body != "":
				if resp.Body != tt.body || resp.Headers["Content-Type"] != "application/json" {
					t.Errorf("body %s (%s), want %s", resp.Body, resp.Headers["Content-Type"], tt.body)
				}
			default:
				if !strings.Contains(resp.Body, "<p>"+tt.message+"</p>") || !strings.Contains(resp.Body, "<h1>"+http.StatusText(tt.status)+"</h1>") {
					t.Errorf("page %s", resp.Body)
				}
			}
			var line map[string]any
			if err := json.Unmarshal([]byte(logs.String()), &line); err != nil {
				t.Fatalf("log %q: %v", logs.String(), err)
			}
			if line["msg"] != "connect rejected" || line["status"] != float64(tt.status) || line["level"] != tt.level {
				t.Errorf("log line %v, want status %d at %s", line, tt.status, tt.level)
			}
		})
	}
}
