package samconfig

import (
	"maps"
	"strings"
	"testing"
)

func TestOverrides(t *testing.T) {
	for _, c := range []struct {
		in      any
		want    map[string]string
		wantErr string
	}{
		{in: `A="x y" B=z`, want: map[string]string{"A": "x y", "B": "z"}},
		{in: []any{`A=1`, `B="2"`}, want: map[string]string{"A": "1", "B": "2"}},
		{in: ``, want: map[string]string{}},
		{in: `A=1 A=2`, wantErr: "given twice"},
		{in: `A="open`, wantErr: "unterminated quote"},
		{in: `novalue`, wantErr: "want Key=Value"},
		{in: 3, wantErr: "unsupported"},
	} {
		got, err := Overrides(c.in)
		switch {
		case c.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), c.wantErr) {
				t.Errorf("Overrides(%q) = %v, %v; want an error with %q", c.in, got, err, c.wantErr)
			}
		case err != nil || !maps.Equal(got, c.want):
			t.Errorf("Overrides(%q) = %v, %v; want %v", c.in, got, err, c.want)
		}
	}
}

func TestDeployParameters(t *testing.T) {
	for env, prefix := range map[string]string{"default": "oauthbroker/", "prod": "oauthbroker-prod/"} {
		ov, err := DeployParameters(env)
		if err != nil {
			t.Fatal(err)
		}
		if ov["SecretsPrefix"] != prefix || ov["ReturnOrigins"] == "" {
			t.Errorf("%s: %v, want SecretsPrefix %q and a ReturnOrigins", env, ov, prefix)
		}
	}
	if _, err := DeployParameters("nosuch"); err == nil {
		t.Error("DeployParameters(nosuch) succeeded")
	}
}
