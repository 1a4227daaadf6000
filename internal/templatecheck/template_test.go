package templatecheck

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-lambda-go/events"
	"gopkg.in/yaml.v3"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/pytools"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/samconfig"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/samtransform"
)

// ---------------------------------------------------------------- expectations

// The functions the template must declare, and the package each is built
// from.
var wantFunctions = []struct {
	name    string
	pkg     string
	timeout int
	// env lists the environment variables the function must receive.
	env []string
}{
	{"AuthorizeFunction", "./functions/authorize", 10, []string{"TABLE_NAME", "BASE_URL", "SECRETS_PREFIX", "RETURN_ORIGINS", "PROVIDERS_FILE", "TOKEN_KEY_ID", "EVENT_BUS_NAME"}},
	{"CallbackFunction", "./functions/callback", 10, []string{"TABLE_NAME", "BASE_URL", "SECRETS_PREFIX", "RETURN_ORIGINS", "PROVIDERS_FILE", "TOKEN_KEY_ID", "EVENT_BUS_NAME"}},
	{"TokenFunction", "./functions/token", 25, []string{"TABLE_NAME", "BASE_URL", "SECRETS_PREFIX", "RETURN_ORIGINS", "PROVIDERS_FILE", "TOKEN_KEY_ID", "EVENT_BUS_NAME"}},
	// shared/setup.ReadEnv validates the whole configuration in every function.
	{"RefreshFunction", "./functions/refresh", 300, []string{"TABLE_NAME", "BASE_URL", "SECRETS_PREFIX", "RETURN_ORIGINS", "PROVIDERS_FILE", "TOKEN_KEY_ID", "EVENT_BUS_NAME", "REFRESH_WORKERS", "REFRESH_FAILING_AFTER"}},
}

// The HTTP routes and the function each must reach.
var wantRoutes = map[string]string{
	"GET /connect/{provider}":                              "AuthorizeFunction",
	"GET /callback/{provider}":                             "CallbackFunction",
	"GET /connections/{provider}/{connection_id}/token":    "TokenFunction",
	"DELETE /connections/{provider}/{connection_id}":       "TokenFunction",
	"POST /connections/{provider}/{connection_id}/confirm": "TokenFunction",
}

// The routes only the app's backend calls: IAM (SigV4) authorization.
var iamRoutes = []string{
	"GET /connections/{provider}/{connection_id}/token",
	"DELETE /connections/{provider}/{connection_id}",
	"POST /connections/{provider}/{connection_id}/confirm",
}

const (
	tableRes  = "GetAtt:ConnectionsTable.Arn"
	dueIndex  = "Sub:${ConnectionsTable.Arn}/index/due"
	keysRes   = "Ref:SigningKeysSecret"
	providers = "Sub:arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:${SecretsPrefix}provider/*"
	stateKeys = "ForAllValues:StringLike dynamodb:LeadingKeys=[state#*]"
	linkKeys  = "ForAllValues:StringLike dynamodb:LeadingKeys=[link#*]"
	connKeys  = "ForAllValues:StringLike dynamodb:LeadingKeys=[conn#*]"
	tokenKey  = "GetAtt:TokenKey.Arn"
	tableCtx  = `StringEquals kms:EncryptionContext:oauthbroker:table=[{"Ref":"ConnectionsTable"}]`
	// The encryption contexts of the two record kinds (shared/setup):
	// sealing names the kind; opening a connection also accepts the
	// table-only context of connections sealed before kinds were named.
	stateCtx    = `StringEquals kms:EncryptionContext:oauthbroker:record=[state]; ` + tableCtx
	connCtx     = `StringEquals kms:EncryptionContext:oauthbroker:record=[connection]; ` + tableCtx
	connOpenCtx = tableCtx + `; StringEqualsIfExists kms:EncryptionContext:oauthbroker:record=[connection]`
	eventBus    = "Sub:arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/${EventBusName}"
	noCond      = ""
	scheduleIn  = `{"source":"oauthbroker.schedule","action":"refresh-due"}`
)

// ownLogGroup is the Arn of a function's own log group (its
// LoggingConfig.LogGroup), which ends in ":*": the group's log streams.
const ownLogGroup = "GetAtt:<its own log group>.Arn"

// The exact IAM grants of each function, as "action on resource [condition]".
// Anything missing or extra fails: widening a function's access must be a
// deliberate change of this list.
var wantGrants = map[string][]grant{
	"AuthorizeFunction": {
		{"dynamodb:PutItem", tableRes, stateKeys},
		{"dynamodb:PutItem", tableRes, linkKeys},
		{"kms:GenerateDataKey", tokenKey, stateCtx},
		{"secretsmanager:GetSecretValue", keysRes, noCond},
		{"secretsmanager:GetSecretValue", providers, noCond},
		{"logs:CreateLogStream", ownLogGroup, noCond},
		{"logs:PutLogEvents", ownLogGroup, noCond},
	},
	"CallbackFunction": {
		{"dynamodb:DeleteItem", tableRes, stateKeys},
		{"dynamodb:GetItem", tableRes, connKeys},
		{"dynamodb:PutItem", tableRes, connKeys},
		{"kms:GenerateDataKey", tokenKey, connCtx},
		{"kms:Decrypt", tokenKey, stateCtx},
		{"secretsmanager:GetSecretValue", keysRes, noCond},
		{"secretsmanager:GetSecretValue", providers, noCond},
		{"events:PutEvents", eventBus, noCond},
		{"logs:CreateLogStream", ownLogGroup, noCond},
		{"logs:PutLogEvents", ownLogGroup, noCond},
	},
	"RefreshFunction": {
		{"dynamodb:Query", dueIndex, noCond},
		{"dynamodb:GetItem", tableRes, connKeys},
		{"dynamodb:UpdateItem", tableRes, connKeys},
		{"dynamodb:PutItem", tableRes, connKeys},
		{"kms:GenerateDataKey", tokenKey, connCtx},
		{"kms:Decrypt", tokenKey, connOpenCtx},
		{"secretsmanager:GetSecretValue", providers, noCond},
		{"events:PutEvents", eventBus, noCond},
		{"logs:CreateLogStream", ownLogGroup, noCond},
		{"logs:PutLogEvents", ownLogGroup, noCond},
	},
	"TokenFunction": {
		{"dynamodb:GetItem", tableRes, connKeys},
		{"dynamodb:UpdateItem", tableRes, connKeys},
		{"dynamodb:PutItem", tableRes, connKeys},
		{"dynamodb:DeleteItem", tableRes, connKeys},
		{"kms:GenerateDataKey", tokenKey, connCtx},
		{"kms:Decrypt", tokenKey, connOpenCtx},
		{"secretsmanager:GetSecretValue", providers, noCond},
		{"events:PutEvents", eventBus, noCond},
		{"logs:CreateLogStream", ownLogGroup, noCond},
		{"logs:PutLogEvents", ownLogGroup, noCond},
	},
}

// Sample values used to evaluate the ARNs built with !Sub of the invoke
// permissions and secrets.
var sampleVars = map[string]string{
	"AWS::Partition":    "aws",
	"AWS::Region":       "us-east-1",
	"AWS::AccountId":    "123456789012",
	"HttpApi":           "abcdef1234",
	"SigningKeysSecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:oauthbroker/keys-Ab12Cd",
}

// ------------------------------------------------------------------ template

type obj = map[string]any

type resource struct {
	Type                string
	Properties          obj
	Metadata            obj
	DeletionPolicy      any
	UpdateReplacePolicy any
}

// cfnTemplate is template.yaml as CloudFormation deploys it: after the SAM
// transform.
type cfnTemplate struct {
	Parameters map[string]obj
	Conditions obj
	Resources  map[string]resource
	Outputs    map[string]obj
}

// deploy is a deployment with samconfig.toml's default environment: its
// one parameter without a default, and a bucket `sam package` uploads to.
var deploy = samtransform.Request{
	Parameters: map[string]string{"ReturnOrigins": "https://app.example.com"},
	Bucket:     "oauthbroker-artifacts",
}

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

var transformed struct {
	sync.Mutex
	tpl *cfnTemplate
	err error
}

// loadTemplate returns template.yaml transformed by the SAM translator
// (package samtransform), once per test process. The translator and
// cfn-lint have checked what any template must be (internal/rehearsal);
// the tests here check what this product needs of it.
func loadTemplate(t *testing.T) *cfnTemplate {
	t.Helper()
	python := pytools.Python(t)
	transformed.Lock()
	defer transformed.Unlock()
	if transformed.tpl == nil && transformed.err == nil {
		out, err := samtransform.Run(context.Background(), python, "template.yaml", deploy)
		tpl := &cfnTemplate{}
		if err == nil {
			err = json.Unmarshal(out, tpl)
		}
		transformed.tpl, transformed.err = tpl, err
	}
	if transformed.err != nil {
		t.Fatalf("template.yaml: %v", transformed.err)
	}
	return transformed.tpl
}

// samFunction is what template.yaml itself says of a function that the
// transform does not carry over: how `sam build` builds it, and the
// Policies SAM would drop.
type samFunction struct {
	Type     string
	Metadata struct {
		BuildMethod string `yaml:"BuildMethod"`
	} `yaml:"Metadata"`
	Properties struct {
		CodeURI  any       `yaml:"CodeUri"`
		Policies yaml.Node `yaml:"Policies"`
	} `yaml:"Properties"`
}

// loadSAMFunctions reads the functions of template.yaml as written.
func loadSAMFunctions(t *testing.T) map[string]samFunction {
	t.Helper()
	var doc struct {
		Resources map[string]samFunction `yaml:"Resources"`
	}
	if err := yaml.Unmarshal(readFile(t, "template.yaml"), &doc); err != nil {
		t.Fatalf("template.yaml: %v", err)
	}
	return doc.Resources
}

// ---------------------------------------------------------- value helpers

func intrinsic(v any) (name string, arg any, ok bool) {
	m, isMap := v.(obj)
	if !isMap || len(m) != 1 {
		return "", nil, false
	}
	for k, a := range m {
		if k == "Ref" || k == "Condition" || strings.HasPrefix(k, "Fn::") {
			return k, a, true
		}
	}
	return "", nil, false
}

func refName(v any) (string, bool) {
	name, arg, ok := intrinsic(v)
	if !ok || name != "Ref" {
		return "", false
	}
	s, ok := arg.(string)
	return s, ok
}

func getAtt(v any) (res, attr string, ok bool) {
	name, arg, isFn := intrinsic(v)
	if !isFn || name != "Fn::GetAtt" {
		return "", "", false
	}
	l, isList := arg.([]any)
	if !isList || len(l) != 2 {
		return "", "", false
	}
	res, ok1 := l[0].(string)
	attr, ok2 := l[1].(string)
	return res, attr, ok1 && ok2
}

func subOf(v any) (tmpl string, vars obj, ok bool) {
	name, arg, isFn := intrinsic(v)
	if !isFn || name != "Fn::Sub" {
		return "", nil, false
	}
	switch a := arg.(type) {
	case string:
		return a, nil, true
	case []any:
		if len(a) != 2 {
			return "", nil, false
		}
		s, ok1 := a[0].(string)
		m, ok2 := a[1].(obj)
		return s, m, ok1 && ok2
	}
	return "", nil, false
}

var subVar = regexp.MustCompile(`\$\{([^}]*)\}`)

// canonical renders a resource expression compactly: Ref:X, GetAtt:X.Y,
// Sub:template, or the literal string.
func canonical(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	if r, ok := refName(v); ok {
		return "Ref:" + r
	}
	if res, attr, ok := getAtt(v); ok {
		return "GetAtt:" + res + "." + attr
	}
	if tmpl, vars, ok := subOf(v); ok && vars == nil {
		return "Sub:" + tmpl
	}
	return describe(v)
}

func describe(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// resolve evaluates a string expression (a literal, Ref, GetAtt or Sub)
// with sampleVars and parameter defaults, as CloudFormation would for one
// sample deployment.
func (tpl *cfnTemplate) resolve(v any) (string, error) {
	lookup := func(name string) (string, error) {
		if s, ok := sampleVars[name]; ok {
			return s, nil
		}
		if p, ok := tpl.Parameters[name]; ok {
			if d, ok := p["Default"]; ok {
				return fmt.Sprint(d), nil
			}
			return "", fmt.Errorf("parameter %s has no default", name)
		}
		return "", fmt.Errorf("no sample value for %s", name)
	}
	if s, ok := v.(string); ok {
		return s, nil
	}
	if r, ok := refName(v); ok {
		return lookup(r)
	}
	if res, attr, ok := getAtt(v); ok {
		return lookup(res + "." + attr)
	}
	if tmpl, vars, ok := subOf(v); ok {
		var firstErr error
		out := subVar.ReplaceAllStringFunc(tmpl, func(m string) string {
			name := m[2 : len(m)-1]
			if strings.HasPrefix(name, "!") {
				return "${" + name[1:] + "}"
			}
			var s string
			var err error
			if local, ok := vars[name]; ok {
				s, err = tpl.resolve(local)
			} else {
				s, err = lookup(name)
			}
			if err != nil && firstErr == nil {
				firstErr = err
			}
			return s
		})
		return out, firstErr
	}
	return "", fmt.Errorf("cannot evaluate %s", describe(v))
}

func path(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(obj)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case float64:
		if n == float64(int(n)) {
			return int(n), true
		}
	}
	return 0, false
}

// stringList accepts a string or a list of strings.
func stringList(v any) ([]string, bool) {
	switch x := v.(type) {
	case string:
		return []string{x}, true
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

func anyList(v any) []any {
	if l, ok := v.([]any); ok {
		return l
	}
	if v == nil {
		return nil
	}
	return []any{v}
}

func (tpl *cfnTemplate) functionProps(name string) obj {
	return tpl.Resources[name].Properties
}

func (tpl *cfnTemplate) ofType(typ string) []string {
	var names []string
	for name, r := range tpl.Resources {
		if r.Type == typ {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	return names
}

// iamWildcard compiles an IAM/ARN pattern (* and ?) into a regexp.
func iamWildcard(pattern string) *regexp.Regexp {
	q := regexp.QuoteMeta(pattern)
	q = strings.ReplaceAll(q, `\*`, `.*`)
	q = strings.ReplaceAll(q, `\?`, `.`)
	return regexp.MustCompile("^" + q + "$")
}

// -------------------------------------------------------------------- tests

func TestParameters(t *testing.T) {
	tpl := loadTemplate(t)
	defaults := []struct {
		name     string
		required bool
		def      string
	}{
		{"ReturnOrigins", true, ""},
		{"BaseUrl", false, ""},
		{"SecretsPrefix", false, "oauthbroker/"},
		{"ProvidersFile", false, ""},
		{"RefreshScheduleExpression", false, "rate(5 minutes)"},
	}
	for _, d := range defaults {
		p, ok := tpl.Parameters[d.name]
		if !ok {
			t.Errorf("parameter %s is missing", d.name)
			continue
		}
		if p["Type"] != "String" {
			t.Errorf("parameter %s: Type = %v, want String", d.name, describe(p["Type"]))
		}
		def, hasDefault := p["Default"]
		switch {
		case d.required && hasDefault:
			t.Errorf("parameter %s must be required (no Default), has Default %s", d.name, describe(def))
		case !d.required && !hasDefault:
			t.Errorf("parameter %s: no Default, want %q", d.name, d.def)
		case !d.required && def != d.def:
			t.Errorf("parameter %s: Default = %s, want %q", d.name, describe(def), d.def)
		}
	}
	for name, p := range tpl.Parameters {
		if _, ok := p["NoEcho"]; ok {
			t.Errorf("parameter %s is NoEcho: secrets never go through parameters (they would reach the environment)", name)
		}
	}

	// AllowedPattern is a Java regex matched against the whole value; the
	// patterns here stay within what RE2 and Java agree on.
	cases := []struct {
		param, value string
		ok           bool
	}{
		{"ReturnOrigins", "https://app.example.com", true},
		{"ReturnOrigins", "https://app.example.com,https://admin.example.com:8443", true},
		{"ReturnOrigins", "", false},
		{"ReturnOrigins", "http://app.example.com", false},
		{"ReturnOrigins", "https://app.example.com/", false},
		{"ReturnOrigins", "https://app.example.com/connected", false},
		{"ReturnOrigins", "https://app.example.com, https://admin.example.com", false},
		{"ReturnOrigins", "https://user@app.example.com", false},
		{"ReturnOrigins", "https://app.example.com,", false},
		{"ReturnOrigins", "*", false},
		{"BaseUrl", "", true},
		{"BaseUrl", "https://connect.example.com", true},
		{"BaseUrl", "https://example.com/oauth", true},
		{"BaseUrl", "https://connect.example.com/", false},
		{"BaseUrl", "http://connect.example.com", false},
		{"BaseUrl", "https://connect.example.com?x=1", false},
		{"BaseUrl", "https://connect.example.com#x", false},
		{"SecretsPrefix", "oauthbroker/", true},
		{"SecretsPrefix", "team-a/oauthbroker-prod/", true},
		{"SecretsPrefix", "", false},
		{"SecretsPrefix", "oauth*", false},
		{"SecretsPrefix", "a b", false},
		{"ProvidersLayerArn", "", true},
		{"ProvidersLayerArn", "arn:aws:lambda:us-east-1:123456789012:layer:oauthbroker-providers:3", true},
		{"ProvidersLayerArn", "arn:aws:lambda:us-east-1:123456789012:layer:oauthbroker-providers", false},
	}
	for _, c := range cases {
		p := tpl.Parameters[c.param]
		pattern, ok := p["AllowedPattern"].(string)
		if !ok {
			t.Errorf("parameter %s has no AllowedPattern", c.param)
			continue
		}
		re, err := regexp.Compile(`^(?:` + pattern + `)$`)
		if err != nil {
			t.Errorf("parameter %s: AllowedPattern %q does not compile: %v", c.param, pattern, err)
			continue
		}
		if got := re.MatchString(c.value); got != c.ok {
			verb := "rejects"
			if got {
				verb = "accepts"
			}
			t.Errorf("parameter %s: AllowedPattern %q %s %q", c.param, pattern, verb, c.value)
		}
	}
}

// TestFunctions: the four functions, as the transform deploys them, run
// the bootstrap on provided.al2023 for arm64 with their timeouts and the
// environment shared/setup reads, and nothing secret in it.
func TestFunctions(t *testing.T) {
	tpl := loadTemplate(t)

	var want []string
	for _, f := range wantFunctions {
		want = append(want, f.name)
	}
	slices.Sort(want)
	if got := tpl.ofType("AWS::Lambda::Function"); !slices.Equal(got, want) {
		t.Errorf("AWS::Lambda::Function resources = %v, want %v", got, want)
	}

	baseURL := tpl.baseURLExpr(t)
	secretLike := regexp.MustCompile(`(?i)SECRET|TOKEN|PASSW|PRIVATE|CREDENTIAL|API_?KEY|SIGNING`)

	for _, f := range wantFunctions {
		t.Run(f.name, func(t *testing.T) {
			r, ok := tpl.Resources[f.name]
			if !ok || r.Type != "AWS::Lambda::Function" {
				t.Fatalf("no AWS::Lambda::Function %s", f.name)
			}
			props := r.Properties
			expect := func(key string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %s, want %s", key, describe(got), describe(want))
				}
			}
			expect("Runtime", props["Runtime"], "provided.al2023")
			expect("Architectures", props["Architectures"], []any{"arm64"})
			expect("Handler", props["Handler"], "bootstrap")
			if n, ok := asInt(props["MemorySize"]); !ok || n != 128 {
				t.Errorf("MemorySize = %s, want 128", describe(props["MemorySize"]))
			}
			if n, ok := asInt(props["Timeout"]); !ok || n != f.timeout {
				t.Errorf("Timeout = %s, want %d", describe(props["Timeout"]), f.timeout)
			}
			if props["PackageType"] != nil && props["PackageType"] != "Zip" {
				t.Errorf("PackageType = %s, want Zip", describe(props["PackageType"]))
			}

			vars, _ := path(props, "Environment", "Variables").(obj)
			// Every value, exactly: internal/rehearsal's TestLiveRehearsal
			// runs the flow on the stack, but with most parameters at their
			// defaults, so a variable written as a constant equal to its
			// default would pass there and break another environment
			// (prod's SecretsPrefix).
			wantEnv := map[string]any{
				"TABLE_NAME":     obj{"Ref": "ConnectionsTable"},
				"BASE_URL":       baseURL,
				"SECRETS_PREFIX": obj{"Ref": "SecretsPrefix"},
				"RETURN_ORIGINS": obj{"Ref": "ReturnOrigins"},
				"PROVIDERS_FILE": obj{"Ref": "ProvidersFile"},
				// The key's ARN, not key material.
				"TOKEN_KEY_ID":   obj{"Fn::GetAtt": []any{"TokenKey", "Arn"}},
				"EVENT_BUS_NAME": obj{"Ref": "EventBusName"},
				// Only the refresh function's; shared/setup reads them.
				"REFRESH_WORKERS":       obj{"Ref": "RefreshWorkers"},
				"REFRESH_FAILING_AFTER": obj{"Ref": "RefreshFailingAfter"},
			}
			for _, name := range f.env {
				got, ok := vars[name]
				if !ok {
					t.Errorf("environment variable %s is missing", name)
					continue
				}
				if !reflect.DeepEqual(got, wantEnv[name]) {
					t.Errorf("environment variable %s = %s, want %s", name, describe(got), describe(wantEnv[name]))
				}
			}
			for name, v := range vars {
				if name != "SECRETS_PREFIX" && name != "TOKEN_KEY_ID" && secretLike.MatchString(name) {
					t.Errorf("environment variable %s looks like a secret: secrets are read from Secrets Manager, never from the environment", name)
				}
				if s, ok := v.(string); ok && len(s) > 40 {
					t.Errorf("environment variable %s has a long literal value: nothing secret belongs in the environment", name)
				}
			}
		})
	}
}

// baseURLExpr returns the BASE_URL expression after checking its shape:
// !If [HasBaseUrl, !Ref BaseUrl, !Sub https://${HttpApi}.execute-api...],
// the execute-api URL without a trailing slash unless BaseUrl is set.
func (tpl *cfnTemplate) baseURLExpr(t *testing.T) any {
	t.Helper()
	want := obj{"Fn::If": []any{
		"HasBaseUrl",
		obj{"Ref": "BaseUrl"},
		obj{"Fn::Sub": "https://${HttpApi}.execute-api.${AWS::Region}.${AWS::URLSuffix}"},
	}}
	cond := obj{"Fn::Not": []any{obj{"Fn::Equals": []any{obj{"Ref": "BaseUrl"}, ""}}}}
	if got := tpl.Conditions["HasBaseUrl"]; !reflect.DeepEqual(got, cond) {
		t.Errorf("condition HasBaseUrl = %s, want %s", describe(got), describe(cond))
	}
	if api := tpl.Resources["HttpApi"]; api.Type != "AWS::ApiGatewayV2::Api" {
		t.Errorf("BASE_URL is built from HttpApi, which must be an AWS::ApiGatewayV2::Api; it is %q", api.Type)
	}
	return want
}

func TestHTTPAPI(t *testing.T) {
	tpl := loadTemplate(t)

	apis := tpl.ofType("AWS::ApiGatewayV2::Api")
	if !slices.Equal(apis, []string{"HttpApi"}) {
		t.Fatalf("AWS::ApiGatewayV2::Api resources = %v, want exactly [HttpApi]", apis)
	}
	api := tpl.Resources["HttpApi"].Properties
	if api["ProtocolType"] != "HTTP" {
		t.Errorf("HttpApi.ProtocolType = %s, want HTTP", describe(api["ProtocolType"]))
	}
	for _, k := range []string{"Target", "RouteKey", "Body", "BodyS3Location", "CredentialsArn"} {
		if _, ok := api[k]; ok {
			t.Errorf("HttpApi.%s is set: no quick-create or OpenAPI body; routes are declared as AWS::ApiGatewayV2::Route", k)
		}
	}
	isAPI := func(v any) bool { r, ok := refName(v); return ok && r == "HttpApi" }

	// Stage.
	stages := tpl.ofType("AWS::ApiGatewayV2::Stage")
	if len(stages) != 1 {
		t.Errorf("AWS::ApiGatewayV2::Stage resources = %v, want exactly one ($default)", stages)
	}
	for _, name := range stages {
		st := tpl.Resources[name].Properties
		if !isAPI(st["ApiId"]) {
			t.Errorf("stage %s: ApiId = %s, want !Ref HttpApi", name, describe(st["ApiId"]))
		}
		if st["StageName"] != "$default" {
			t.Errorf("stage %s: StageName = %s, want $default (BASE_URL has no stage path)", name, describe(st["StageName"]))
		}
		if st["AutoDeploy"] != true {
			t.Errorf("stage %s: AutoDeploy = %s, want true", name, describe(st["AutoDeploy"]))
		}
		for _, k := range []string{"ThrottlingRateLimit", "ThrottlingBurstLimit"} {
			v := path(st, "DefaultRouteSettings", k)
			if r, ok := refName(v); ok {
				v = tpl.Parameters[r]["Default"]
			}
			if n, ok := asInt(v); !ok || n <= 0 {
				t.Errorf("stage %s: DefaultRouteSettings.%s = %s, want a positive limit (or a Number parameter with one as default)", name, k, describe(path(st, "DefaultRouteSettings", k)))
			}
		}
	}

	// Routes -> integrations -> functions.
	got := map[string]string{}
	for _, name := range tpl.ofType("AWS::ApiGatewayV2::Route") {
		rt := tpl.Resources[name].Properties
		key, _ := rt["RouteKey"].(string)
		if !isAPI(rt["ApiId"]) {
			t.Errorf("route %s (%s): ApiId = %s, want !Ref HttpApi", name, key, describe(rt["ApiId"]))
		}
		a, ok := rt["AuthorizationType"]
		switch {
		case slices.Contains(iamRoutes, key) && a != "AWS_IAM":
			t.Errorf("route %s (%s): AuthorizationType = %s, want AWS_IAM: only the app's backend, with execute-api:Invoke, may fetch or delete tokens", name, key, describe(a))
		case !slices.Contains(iamRoutes, key) && ok && a != "NONE":
			t.Errorf("route %s (%s): AuthorizationType = %s: the connect and callback routes are public (authorized by signed links and state)", name, key, describe(a))
		}
		tmpl, _, ok := subOf(rt["Target"])
		integ, found := strings.CutPrefix(tmpl, "integrations/")
		if !ok || !found || !strings.HasPrefix(integ, "${") || !strings.HasSuffix(integ, "}") {
			t.Errorf("route %s (%s): Target = %s, want !Sub integrations/${SomeIntegration}", name, key, describe(rt["Target"]))
			continue
		}
		integ = integ[2 : len(integ)-1]
		ir, ok := tpl.Resources[integ]
		if !ok || ir.Type != "AWS::ApiGatewayV2::Integration" {
			t.Errorf("route %s (%s): Target names %s, which is not an AWS::ApiGatewayV2::Integration", name, key, integ)
			continue
		}
		ip := ir.Properties
		if !isAPI(ip["ApiId"]) {
			t.Errorf("integration %s: ApiId = %s, want !Ref HttpApi", integ, describe(ip["ApiId"]))
		}
		if ip["IntegrationType"] != "AWS_PROXY" {
			t.Errorf("integration %s: IntegrationType = %s, want AWS_PROXY", integ, describe(ip["IntegrationType"]))
		}
		if pfv := ip["PayloadFormatVersion"]; pfv != "2.0" {
			t.Errorf("integration %s: PayloadFormatVersion = %s, want the string \"2.0\" (quoted: an unquoted 2.0 is a number)", integ, describe(pfv))
		}
		fn, attr, ok := getAtt(ip["IntegrationUri"])
		if !ok || attr != "Arn" {
			if r, isRef := refName(ip["IntegrationUri"]); isRef {
				fn, ok = r, true
			} else {
				t.Errorf("integration %s: IntegrationUri = %s, want !GetAtt <Function>.Arn", integ, describe(ip["IntegrationUri"]))
				continue
			}
		}
		if prev, dup := got[key]; dup {
			t.Errorf("route key %q is declared twice (%s and %s)", key, prev, fn)
		}
		got[key] = fn
	}
	for key, fn := range wantRoutes {
		switch g, ok := got[key]; {
		case !ok:
			t.Errorf("no route %q (to %s)", key, fn)
		case g != fn:
			t.Errorf("route %q reaches %s, want %s", key, g, fn)
		}
	}
	for key, fn := range got {
		if _, ok := wantRoutes[key]; !ok {
			t.Errorf("unexpected route %q (to %s): every route is public; add it to wantRoutes deliberately", key, fn)
		}
	}

	// Invoke permissions, scoped to this API and route.
	for key, fn := range wantRoutes {
		method, routePath, _ := strings.Cut(key, " ")
		samplePath := strings.ReplaceAll(routePath, "{provider}", "acme")
		arn := func(api, p string) string {
			return "arn:aws:execute-api:us-east-1:123456789012:" + api + "/$default/" + method + p
		}
		var perms []string
		for _, name := range tpl.ofType("AWS::Lambda::Permission") {
			pp := tpl.Resources[name].Properties
			target, _ := refName(pp["FunctionName"])
			if res, _, ok := getAtt(pp["FunctionName"]); ok {
				target = res
			}
			if target != fn {
				continue
			}
			perms = append(perms, name)
			if pp["Action"] != "lambda:InvokeFunction" {
				t.Errorf("permission %s: Action = %s, want lambda:InvokeFunction", name, describe(pp["Action"]))
			}
			if pp["Principal"] != "apigateway.amazonaws.com" {
				t.Errorf("permission %s: Principal = %s, want apigateway.amazonaws.com", name, describe(pp["Principal"]))
			}
			tmpl, _, isSub := subOf(pp["SourceArn"])
			if !isSub || !strings.Contains(tmpl, ":${HttpApi}/") {
				t.Errorf("permission %s: SourceArn = %s, want an execute-api ARN of ${HttpApi}", name, describe(pp["SourceArn"]))
				continue
			}
			src, err := tpl.resolve(pp["SourceArn"])
			if err != nil {
				t.Errorf("permission %s: SourceArn: %v", name, err)
				continue
			}
			re := iamWildcard(src)
			if !re.MatchString(arn("abcdef1234", samplePath)) || !re.MatchString(arn("abcdef1234", routePath)) {
				t.Errorf("permission %s: SourceArn %s does not cover %s %s", name, src, method, routePath)
			}
			if re.MatchString(arn("zzzzzzzzzz", samplePath)) {
				t.Errorf("permission %s: SourceArn %s is not scoped to this API", name, src)
			}
			for other, otherFn := range wantRoutes {
				if other == key || otherFn == wantRoutes[key] {
					continue // another route of the same function may share the permission
				}
				_, op, _ := strings.Cut(other, " ")
				if re.MatchString(arn("abcdef1234", strings.ReplaceAll(op, "{provider}", "acme"))) {
					t.Errorf("permission %s: SourceArn %s also covers route %q", name, src, other)
				}
			}
		}
		if len(perms) == 0 {
			t.Errorf("no AWS::Lambda::Permission lets API Gateway invoke %s", fn)
		}
	}
}

// TestRefreshSchedule: one EventBridge Scheduler schedule, and no other
// event source, invokes the refresh function, one sweep at a time, with
// the input of events/refresh.json; neither Lambda nor the schedule
// retries much, and the schedule's role may invoke that function only.
func TestRefreshSchedule(t *testing.T) {
	tpl := loadTemplate(t)
	for _, typ := range []string{"AWS::Events::Rule", "AWS::Lambda::EventSourceMapping", "AWS::Pipes::Pipe"} {
		if got := tpl.ofType(typ); len(got) > 0 {
			t.Errorf("unexpected event sources %s %v: only the refresh schedule invokes a function by itself", typ, got)
		}
	}
	schedules := tpl.ofType("AWS::Scheduler::Schedule")
	if len(schedules) != 1 {
		t.Fatalf("AWS::Scheduler::Schedule resources = %v, want one (RefreshFunction's ScheduleV2 event)", schedules)
	}
	name := schedules[0]
	p := tpl.Resources[name].Properties
	if fn, attr, _ := getAtt(path(p, "Target", "Arn")); fn != "RefreshFunction" || attr != "Arn" {
		t.Errorf("schedule %s: Target.Arn = %s, want !GetAtt RefreshFunction.Arn", name, describe(path(p, "Target", "Arn")))
	}

	props := tpl.functionProps("RefreshFunction")
	if n, ok := asInt(props["ReservedConcurrentExecutions"]); !ok || n != 1 {
		t.Errorf("RefreshFunction ReservedConcurrentExecutions = %s, want 1 (one sweep at a time)", describe(props["ReservedConcurrentExecutions"]))
	}
	expr, _ := refName(p["ScheduleExpression"])
	if def := tpl.Parameters[expr]["Default"]; expr != "RefreshScheduleExpression" || def != "rate(5 minutes)" {
		t.Errorf("schedule %s: ScheduleExpression = %s (default %s), want !Ref RefreshScheduleExpression, rate(5 minutes) by default", name, describe(p["ScheduleExpression"]), describe(def))
	}
	input, ok := path(p, "Target", "Input").(string)
	if !ok {
		t.Fatalf("schedule %s: Target.Input = %s, want a JSON string", name, describe(path(p, "Target", "Input")))
	}
	var got, want any
	if err := json.Unmarshal([]byte(input), &got); err != nil {
		t.Fatalf("schedule %s: Target.Input is not valid JSON: %v", name, err)
	}
	file := readFile(t, "events/refresh.json")
	if err := json.Unmarshal(file, &want); err != nil {
		t.Fatalf("events/refresh.json is not valid JSON: %v", err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("schedule %s: Input %s differs from events/refresh.json %s", name, input, bytes.TrimSpace(file))
	}
	var canon any
	_ = json.Unmarshal([]byte(scheduleIn), &canon)
	if !reflect.DeepEqual(want, canon) {
		t.Errorf("events/refresh.json = %s, want %s", bytes.TrimSpace(file), scheduleIn)
	}
	if n, ok := asInt(path(p, "Target", "RetryPolicy", "MaximumRetryAttempts")); !ok || n < 0 || n > 3 {
		t.Errorf("schedule %s: Target.RetryPolicy.MaximumRetryAttempts = %s, want a small number (0-3)", name, describe(path(p, "Target", "RetryPolicy", "MaximumRetryAttempts")))
	}

	// Lambda retries failed asynchronous invocations twice by default; the
	// next scheduled run does that work instead.
	var configs []string
	for _, c := range tpl.ofType("AWS::Lambda::EventInvokeConfig") {
		cp := tpl.Resources[c].Properties
		if fn, _ := refName(cp["FunctionName"]); fn != "RefreshFunction" {
			t.Errorf("%s configures %s: only RefreshFunction is invoked asynchronously", c, describe(cp["FunctionName"]))
			continue
		}
		configs = append(configs, c)
		if n, ok := asInt(cp["MaximumRetryAttempts"]); !ok || n != 0 {
			t.Errorf("%s: MaximumRetryAttempts = %s, want 0", c, describe(cp["MaximumRetryAttempts"]))
		}
	}
	if len(configs) != 1 {
		t.Errorf("RefreshFunction has %d AWS::Lambda::EventInvokeConfig, want one (EventInvokeConfig)", len(configs))
	}

	// The role SAM generates for the schedule.
	role, attr, _ := getAtt(path(p, "Target", "RoleArn"))
	r := tpl.Resources[role]
	if r.Type != "AWS::IAM::Role" || attr != "Arn" {
		t.Fatalf("schedule %s: Target.RoleArn = %s, want the Arn of a role of the stack", name, describe(path(p, "Target", "RoleArn")))
	}
	if err := checkTrust(r.Properties["AssumeRolePolicyDocument"], "scheduler.amazonaws.com"); err != nil {
		t.Errorf("%s: AssumeRolePolicyDocument: %v", role, err)
	}
	var grants []string
	for _, pol := range anyList(r.Properties["Policies"]) {
		for _, st := range anyList(path(pol, "PolicyDocument", "Statement")) {
			actions, _ := stringList(path(st, "Action"))
			for _, a := range actions {
				for _, res := range anyList(path(st, "Resource")) {
					grants = append(grants, a+" on "+canonical(res))
				}
			}
		}
	}
	if want := []string{"lambda:InvokeFunction on GetAtt:RefreshFunction.Arn"}; !slices.Equal(grants, want) || len(anyList(r.Properties["ManagedPolicyArns"])) > 0 {
		t.Errorf("%s grants %v (managed policies %s), want only %v", role, grants, describe(r.Properties["ManagedPolicyArns"]), want)
	}
}

func TestConnectionsTable(t *testing.T) {
	tpl := loadTemplate(t)
	if got := tpl.ofType("AWS::DynamoDB::Table"); !slices.Equal(got, []string{"ConnectionsTable"}) {
		t.Fatalf("AWS::DynamoDB::Table resources = %v, want [ConnectionsTable]", got)
	}
	if got := tpl.ofType("AWS::Serverless::SimpleTable"); len(got) > 0 {
		t.Errorf("unexpected AWS::Serverless::SimpleTable %v", got)
	}
	r := tpl.Resources["ConnectionsTable"]
	p := r.Properties
	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ConnectionsTable %s = %s, want %s", what, describe(got), describe(want))
		}
	}
	check("DeletionPolicy", r.DeletionPolicy, "Retain")
	check("UpdateReplacePolicy", r.UpdateReplacePolicy, "Retain")
	check("BillingMode", p["BillingMode"], "PAY_PER_REQUEST")
	check("DeletionProtectionEnabled", p["DeletionProtectionEnabled"], true)
	check("TimeToLiveSpecification", p["TimeToLiveSpecification"], obj{"AttributeName": "ttl", "Enabled": true})
	check("PointInTimeRecoverySpecification.PointInTimeRecoveryEnabled", path(p, "PointInTimeRecoverySpecification", "PointInTimeRecoveryEnabled"), true)
	check("SSESpecification.SSEEnabled", path(p, "SSESpecification", "SSEEnabled"), true)
	if _, ok := p["TableName"]; ok {
		t.Errorf("ConnectionsTable has a fixed TableName: let CloudFormation name it so stacks can coexist (functions get TABLE_NAME)")
	}
	if _, ok := p["ProvisionedThroughput"]; ok {
		t.Errorf("ConnectionsTable has ProvisionedThroughput with on-demand billing")
	}

	attrs := map[string]any{}
	for _, a := range anyList(p["AttributeDefinitions"]) {
		name, _ := path(a, "AttributeName").(string)
		attrs[name] = path(a, "AttributeType")
	}
	check("AttributeDefinitions", attrs, map[string]any{"pk": "S", "sk": "S", "due_shard": "S", "refresh_due": "N"})
	keySchema := func(hash, rng string) []any {
		return []any{obj{"AttributeName": hash, "KeyType": "HASH"}, obj{"AttributeName": rng, "KeyType": "RANGE"}}
	}
	check("KeySchema", p["KeySchema"], keySchema("pk", "sk"))

	gsis := anyList(p["GlobalSecondaryIndexes"])
	if len(gsis) != 1 {
		t.Fatalf("ConnectionsTable has %d global secondary indexes, want exactly one (due)", len(gsis))
	}
	g := gsis[0]
	check("GSI IndexName", path(g, "IndexName"), "due")
	check("GSI due KeySchema", path(g, "KeySchema"), keySchema("due_shard", "refresh_due"))
	check("GSI due ProjectionType", path(g, "Projection", "ProjectionType"), "INCLUDE")
	nka, _ := stringList(path(g, "Projection", "NonKeyAttributes"))
	slices.Sort(nka)
	check("GSI due NonKeyAttributes (sorted; never tokens)", nka, []string{"connection_id", "provider"})
}

func TestSigningKeysSecret(t *testing.T) {
	tpl := loadTemplate(t)
	if got := tpl.ofType("AWS::SecretsManager::Secret"); !slices.Equal(got, []string{"SigningKeysSecret"}) {
		t.Fatalf("AWS::SecretsManager::Secret resources = %v, want [SigningKeysSecret] (provider credentials are created by the operator)", got)
	}
	p := tpl.Resources["SigningKeysSecret"].Properties
	if tmpl, _, ok := subOf(p["Name"]); !ok || tmpl != "${SecretsPrefix}keys" {
		t.Errorf("SigningKeysSecret Name = %s, want !Sub ${SecretsPrefix}keys", describe(p["Name"]))
	}
	if _, ok := p["SecretString"]; ok {
		t.Errorf("SigningKeysSecret has a literal SecretString: the key must be generated (GenerateSecretString)")
	}
	gen, _ := p["GenerateSecretString"].(obj)
	key, _ := gen["GenerateStringKey"].(string)
	tmplStr, _ := gen["SecretStringTemplate"].(string)
	var tmpl map[string]any
	if err := json.Unmarshal([]byte(tmplStr), &tmpl); err != nil {
		t.Fatalf("GenerateSecretString.SecretStringTemplate %q is not a JSON object: %v", tmplStr, err)
	}
	if !reflect.DeepEqual(tmpl, map[string]any{"current_kid": key}) || key == "" {
		t.Errorf("SecretStringTemplate %s with GenerateStringKey %q: want {\"current_kid\":\"<GenerateStringKey>\"} so the generated key is the current one", tmplStr, key)
	}
	if key != "k1" {
		t.Errorf("GenerateStringKey = %q, want k1", key)
	}
	if n, ok := asInt(gen["PasswordLength"]); !ok || n < 64 {
		t.Errorf("GenerateSecretString.PasswordLength = %s, want >= 64", describe(gen["PasswordLength"]))
	}
	if gen["ExcludePunctuation"] != true {
		t.Errorf("GenerateSecretString.ExcludePunctuation = %s, want true", describe(gen["ExcludePunctuation"]))
	}
	for _, k := range []string{"ExcludeLowercase", "ExcludeUppercase", "ExcludeNumbers"} {
		if gen[k] == true {
			t.Errorf("GenerateSecretString.%s = true needlessly weakens the key", k)
		}
	}
}

// grant is one (action, resource, condition) an IAM statement allows.
type grant struct {
	Action, Resource, Condition string
}

func (g grant) String() string {
	s := g.Action + " on " + g.Resource
	if g.Condition != "" {
		s += " when " + g.Condition
	}
	return s
}

// conditionString renders a statement's Condition as sorted
// "Operator key=[values]" clauses.
func conditionString(c any) string {
	m, _ := c.(obj)
	var clauses []string
	for op, kv := range m {
		km, _ := kv.(obj)
		for k, v := range km {
			vals, ok := stringList(v)
			if !ok {
				vals = []string{describe(v)}
			}
			slices.Sort(vals)
			clauses = append(clauses, fmt.Sprintf("%s %s=[%s]", op, k, strings.Join(vals, ",")))
		}
	}
	slices.Sort(clauses)
	return strings.Join(clauses, "; ")
}

func TestPolicies(t *testing.T) {
	tpl := loadTemplate(t)

	// Every statement of every IAM policy the stack creates, the roles SAM
	// generates included.
	type located struct {
		where string
		st    obj
	}
	var all []located
	for _, name := range slices.Sorted(maps.Keys(tpl.Resources)) {
		r := tpl.Resources[name]
		switch r.Type {
		case "AWS::IAM::Role":
			for i, pol := range anyList(r.Properties["Policies"]) {
				for j, s := range anyList(path(pol, "PolicyDocument", "Statement")) {
					st, _ := s.(obj)
					all = append(all, located{fmt.Sprintf("%s policy %d statement %d (%v)", name, i, j, st["Sid"]), st})
				}
			}
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy":
			for j, s := range anyList(path(r.Properties, "PolicyDocument", "Statement")) {
				st, _ := s.(obj)
				all = append(all, located{fmt.Sprintf("%s statement %d (%v)", name, j, st["Sid"]), st})
			}
		}
	}
	if len(all) == 0 {
		t.Fatal("no IAM policy statements found")
	}
	for _, l := range all {
		st := l.st
		for _, k := range []string{"NotAction", "NotResource", "NotPrincipal"} {
			if _, ok := st[k]; ok {
				t.Errorf("%s: %s is not allowed (it grants everything else)", l.where, k)
			}
		}
		actions, ok := stringList(st["Action"])
		if !ok || len(actions) == 0 {
			t.Errorf("%s: Action = %s, want literal action names", l.where, describe(st["Action"]))
		}
		dataAction := false
		for _, a := range actions {
			if strings.Contains(a, "*") {
				t.Errorf("%s: action %q has a wildcard", l.where, a)
			}
			if strings.EqualFold(a, "dynamodb:Scan") {
				t.Errorf("%s: dynamodb:Scan is not allowed (and ForAllValues LeadingKeys conditions do not restrict it)", l.where)
			}
			lower := strings.ToLower(a)
			if strings.HasPrefix(lower, "dynamodb:") || strings.HasPrefix(lower, "secretsmanager:") || strings.HasPrefix(lower, "kms:") {
				dataAction = true
			}
		}
		for _, r := range anyList(st["Resource"]) {
			if s, ok := r.(string); ok && strings.TrimSpace(s) == "*" && dataAction {
				t.Errorf("%s: Resource \"*\" with DynamoDB, KMS or Secrets Manager actions %v", l.where, actions)
			}
		}
		if st["Resource"] == nil {
			t.Errorf("%s: no Resource", l.where)
		}
	}

	const (
		keysARN     = "arn:aws:secretsmanager:us-east-1:123456789012:secret:oauthbroker/keys-Ab12Cd"
		providerARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:oauthbroker/provider/acme-Ab12Cd"
		otherARN    = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payments/db-Ab12Cd"
	)
	for _, f := range wantFunctions {
		t.Run(f.name, func(t *testing.T) {
			got := tpl.grantsOf(t, f.name)
			canRead := map[string]bool{}
			for _, st := range tpl.statements(t, f.name) {
				if st["Effect"] != "Allow" {
					continue
				}
				actions, _ := stringList(st["Action"])
				for _, a := range actions {
					for _, r := range anyList(st["Resource"]) {
						if a != "secretsmanager:GetSecretValue" {
							continue
						}
						pattern, err := tpl.resolve(r)
						if err != nil {
							t.Errorf("GetSecretValue resource %s: %v", canonical(r), err)
							continue
						}
						re := iamWildcard(pattern)
						for _, arn := range []string{keysARN, providerARN, otherARN} {
							if re.MatchString(arn) {
								canRead[arn] = true
							}
						}
					}
				}
			}
			want := wantGrants[f.name]
			for _, g := range got {
				if !slices.Contains(want, g) {
					t.Errorf("unexpected grant: %s", g)
				}
			}
			for _, g := range want {
				if !slices.Contains(got, g) {
					t.Errorf("missing grant: %s", g)
				}
			}
			if t.Failed() {
				lines := make([]string, len(got))
				for i, g := range got {
					lines[i] = g.String()
				}
				t.Logf("%s grants:\n  %s", f.name, strings.Join(lines, "\n  "))
			}

			// Evaluate the secret ARNs for one sample deployment.
			wantKeys := f.name == "AuthorizeFunction" || f.name == "CallbackFunction"
			if canRead[keysARN] != wantKeys {
				t.Errorf("can read the signing keys secret (%s): %v, want %v", keysARN, canRead[keysARN], wantKeys)
			}
			if !canRead[providerARN] {
				t.Errorf("cannot read provider client credentials %s", providerARN)
			}
			if canRead[otherARN] {
				t.Errorf("can read an unrelated secret %s", otherARN)
			}
		})
	}
}

func TestOutputs(t *testing.T) {
	tpl := loadTemplate(t)
	base := tpl.baseURLExpr(t)
	want := map[string]any{
		"ApiUrl":               base,
		"ConnectUrlPattern":    obj{"Fn::Sub": []any{"${Base}/connect/{provider}", obj{"Base": base}}},
		"CallbackUrlPattern":   obj{"Fn::Sub": []any{"${Base}/callback/{provider}", obj{"Base": base}}},
		"TokenUrlPattern":      obj{"Fn::Sub": []any{"${Base}/connections/{provider}/{connection_id}/token", obj{"Base": base}}},
		"TableName":            obj{"Ref": "ConnectionsTable"},
		"SigningKeysSecretArn": obj{"Ref": "SigningKeysSecret"},
		"TokenKeyArn":          obj{"Fn::GetAtt": []any{"TokenKey", "Arn"}},
		// The README's step 4 after the first deploy.
		"AppTokenAccessPolicyArn": obj{"Ref": "AppTokenAccessPolicy"},
	}
	for name, w := range want {
		o, ok := tpl.Outputs[name]
		if !ok {
			t.Errorf("output %s is missing", name)
			continue
		}
		if !reflect.DeepEqual(o["Value"], w) {
			t.Errorf("output %s = %s, want %s", name, describe(o["Value"]), describe(w))
		}
	}
}

// ------------------------------------------------------------ sample events

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(t), filepath.FromSlash(rel)))
	if err != nil {
		t.Fatalf("%v", err)
	}
	return b
}

func TestSampleHTTPEvents(t *testing.T) {
	tpl := loadTemplate(t)
	routeKeys := map[string]bool{}
	for _, name := range tpl.ofType("AWS::ApiGatewayV2::Route") {
		if k, ok := tpl.Resources[name].Properties["RouteKey"].(string); ok {
			routeKeys[k] = true
		}
	}
	acme := map[string]string{"provider": "acme"}
	conn := map[string]string{"provider": "acme", "connection_id": "customer-42"}
	cases := []struct {
		file, routeKey, rawPath string
		query                   []string // required query parameters
		placeholders            []string // parameters that must hold REPLACE_ME
		cookies                 bool
		method                  string
		pathParams              map[string]string
		iam                     bool // the route is IAM-authorized: the event carries the caller
		body                    string
	}{
		{"events/connect.json", "GET /connect/{provider}", "/connect/acme",
			[]string{"connection_id", "return_to", "exp", "kid", "sig", "nonce"}, []string{"sig"}, false, "GET", acme, false, ""},
		{"events/callback.json", "GET /callback/{provider}", "/callback/acme",
			[]string{"code", "state"}, []string{"code", "state"}, true, "GET", acme, false, ""},
		{"events/token.json", "GET /connections/{provider}/{connection_id}/token", "/connections/acme/customer-42/token",
			nil, nil, false, "GET", conn, true, ""},
		{"events/delete.json", "DELETE /connections/{provider}/{connection_id}", "/connections/acme/customer-42",
			nil, nil, false, "DELETE", conn, true, ""},
		{"events/confirm.json", "POST /connections/{provider}/{connection_id}/confirm", "/connections/acme/customer-42/confirm",
			nil, nil, false, "POST", conn, true, `{"confirmation":"REPLACE_ME_WITH_THE_CODE_FROM_THE_RETURN_URL"}`},
	}
	covered := map[string]bool{}
	for _, c := range cases {
		covered[c.routeKey] = true
	}
	for k := range wantRoutes {
		if !covered[k] {
			t.Errorf("route %q has no sample event in events/ (what `sam local invoke -e` needs)", k)
		}
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			dec := json.NewDecoder(bytes.NewReader(readFile(t, c.file)))
			dec.DisallowUnknownFields()
			var ev events.APIGatewayV2HTTPRequest
			if err := dec.Decode(&ev); err != nil {
				t.Fatalf("does not decode into events.APIGatewayV2HTTPRequest (unknown or mistyped field?): %v", err)
			}
			rc := ev.RequestContext
			check := func(what string, got, want any) {
				t.Helper()
				if !reflect.DeepEqual(got, want) {
					t.Errorf("%s = %s, want %s", what, describe(got), describe(want))
				}
			}
			check("version", ev.Version, "2.0")
			check("routeKey", ev.RouteKey, c.routeKey)
			if !routeKeys[ev.RouteKey] {
				t.Errorf("routeKey %q is not a route of template.yaml (%v)", ev.RouteKey, slices.Sorted(maps.Keys(routeKeys)))
			}
			check("requestContext.routeKey", rc.RouteKey, ev.RouteKey)
			check("rawPath", ev.RawPath, c.rawPath)
			check("requestContext.http.path", rc.HTTP.Path, ev.RawPath)
			check("requestContext.http.method", rc.HTTP.Method, c.method)
			check("requestContext.stage", rc.Stage, "$default")
			check("pathParameters", ev.PathParameters, c.pathParams)
			if iam := rc.Authorizer != nil && rc.Authorizer.IAM != nil; iam != c.iam {
				t.Errorf("requestContext.authorizer.iam present = %v, want %v (only IAM-authorized routes carry the caller)", iam, c.iam)
			} else if iam && (rc.Authorizer.IAM.UserARN == "" || rc.Authorizer.IAM.AccountID == "") {
				t.Errorf("requestContext.authorizer.iam lacks userArn or accountId")
			}
			check("isBase64Encoded", ev.IsBase64Encoded, false)
			check("body", ev.Body, c.body)
			if rc.RequestID == "" || rc.TimeEpoch <= 0 || rc.DomainName == "" {
				t.Errorf("requestContext needs requestId, timeEpoch and domainName; got %q, %d, %q", rc.RequestID, rc.TimeEpoch, rc.DomainName)
			}
			check("headers.host", ev.Headers["host"], rc.DomainName)
			if net.ParseIP(rc.HTTP.SourceIP) == nil {
				t.Errorf("requestContext.http.sourceIp %q is not an IP", rc.HTTP.SourceIP)
			}
			if rc.HTTP.UserAgent == "" || ev.Headers["user-agent"] != rc.HTTP.UserAgent {
				t.Errorf("requestContext.http.userAgent %q must equal headers.user-agent %q", rc.HTTP.UserAgent, ev.Headers["user-agent"])
			}
			for k := range ev.Headers {
				if k != strings.ToLower(k) {
					t.Errorf("header %q: API Gateway lower-cases header names", k)
				}
			}
			if _, ok := ev.Headers["cookie"]; ok {
				t.Errorf("headers.cookie: payload 2.0 moves cookies to the cookies array")
			}

			q, err := url.ParseQuery(ev.RawQueryString)
			if err != nil {
				t.Fatalf("rawQueryString %q: %v", ev.RawQueryString, err)
			}
			flat := map[string]string{}
			for k, v := range q {
				if len(v) != 1 {
					t.Errorf("rawQueryString repeats %q", k)
				}
				flat[k] = strings.Join(v, ",")
			}
			if len(flat) > 0 || ev.QueryStringParameters != nil { // API Gateway omits it for an empty query
				check("queryStringParameters (must match rawQueryString)", ev.QueryStringParameters, flat)
			}
			for _, k := range c.query {
				if _, ok := flat[k]; !ok {
					t.Errorf("query parameter %s is missing", k)
				}
			}
			for _, k := range c.placeholders {
				if flat[k] != "REPLACE_ME" {
					t.Errorf("query parameter %s = %q, want the placeholder REPLACE_ME (tests fill it in; never commit a real value)", k, flat[k])
				}
			}
			if c.cookies {
				if len(ev.Cookies) == 0 {
					t.Errorf("cookies is empty: the callback needs the __Host- binding cookie")
				}
				for _, ck := range ev.Cookies {
					name, val, ok := strings.Cut(ck, "=")
					if !ok || !strings.HasPrefix(name, "__Host-") || !strings.Contains(val, "REPLACE_ME") {
						t.Errorf("cookie %q: want __Host-<name>=REPLACE_ME", ck)
					}
				}
			} else if len(ev.Cookies) > 0 {
				t.Errorf("cookies = %v: the connect request comes before the broker sets any cookie", ev.Cookies)
			}
		})
	}
}

// ----------------------------------------------------------- samconfig.toml

func TestSamconfig(t *testing.T) {
	tpl := loadTemplate(t)
	cfg, err := samconfig.Parse(readFile(t, "samconfig.toml"))
	if err != nil {
		t.Fatalf("samconfig.toml: %v", err)
	}
	get := func(table, key string) any { return cfg[table][key] }
	if v := get("", "version"); v != 0.1 {
		t.Errorf("samconfig.toml version = %v, want 0.1", describe(v))
	}
	if get("default.build.parameters", "cached") != true || get("default.build.parameters", "parallel") != true {
		t.Errorf("[default.build.parameters] should set cached = true and parallel = true")
	}

	prefixes := map[string]string{}
	for env, stack := range map[string]string{"default": "oauthbroker", "prod": "oauthbroker-prod"} {
		if got := get(env+".global.parameters", "stack_name"); got != stack {
			t.Errorf("[%s.global.parameters] stack_name = %s, want %q", env, describe(got), stack)
		}
		deploy := env + ".deploy.parameters"
		for key, want := range map[string]any{"capabilities": "CAPABILITY_IAM", "confirm_changeset": true, "resolve_s3": true} {
			if got := get(deploy, key); got != want {
				t.Errorf("[%s] %s = %s, want %s", deploy, key, describe(got), describe(want))
			}
		}
		ov, err := samconfig.Overrides(get(deploy, "parameter_overrides"))
		if err != nil {
			t.Errorf("[%s] parameter_overrides: %v", deploy, err)
			continue
		}
		for name, p := range tpl.Parameters {
			if _, hasDefault := p["Default"]; !hasDefault {
				if _, ok := ov[name]; !ok {
					t.Errorf("[%s] parameter_overrides lacks required parameter %s", deploy, name)
				}
			}
		}
		prefix, ok := ov["SecretsPrefix"]
		if !ok {
			prefix = fmt.Sprint(tpl.Parameters["SecretsPrefix"]["Default"])
		}
		if other, dup := prefixes[prefix]; dup {
			t.Errorf("environments %s and %s share SecretsPrefix %q: both stacks would create the secret %skeys", other, env, prefix, prefix)
		}
		prefixes[prefix] = env
	}

	// Every parameter_overrides anywhere names template parameters with
	// values their AllowedPattern accepts.
	for table, kv := range cfg {
		v, ok := kv["parameter_overrides"]
		if !ok {
			continue
		}
		ov, err := samconfig.Overrides(v)
		if err != nil {
			t.Errorf("[%s] parameter_overrides: %v", table, err)
			continue
		}
		for name, val := range ov {
			p, ok := tpl.Parameters[name]
			if !ok {
				t.Errorf("[%s] parameter_overrides sets %s, which template.yaml does not declare", table, name)
				continue
			}
			if pattern, ok := p["AllowedPattern"].(string); ok {
				if re, err := regexp.Compile(`^(?:` + pattern + `)$`); err == nil && !re.MatchString(val) {
					t.Errorf("[%s] parameter_overrides %s=%q does not match its AllowedPattern %q", table, name, val, pattern)
				}
			}
		}
	}
}
