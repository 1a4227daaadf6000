package rehearsal

import (
	"bytes"
	"encoding/json"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/dynamodb"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/awsstack"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/logcheck"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/providertest"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/pytools"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/samconfig"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/sampleevent"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/samtransform"
	"github.com/oauthbroker/oauthbroker/shared/setup"
	"github.com/oauthbroker/oauthbroker/shared/signing"
	"github.com/oauthbroker/oauthbroker/shared/store"
	"github.com/oauthbroker/oauthbroker/shared/store/dynamo"
)

const (
	// baseURL is the stack's BaseUrl: the functions' BASE_URL, without the
	// API moto does not create.
	baseURL   = "https://broker.example.test"
	appOrigin = "https://app.example.test"
	returnTo  = appOrigin + "/connected"
	clientID  = "acme-rehearsal-client"
	// clientSecret is registered with logcheck by PutSecret.
	clientSecret = "acme-rehearsal-secret-Hq27"
)

// serviceOfTarget maps an X-Amz-Target prefix of the services the
// functions call to its IAM service prefix.
var serviceOfTarget = map[string]string{
	"DynamoDB_20120810": "dynamodb",
	"TrentService":      "kms",
	"secretsmanager":    "secretsmanager",
	"AWSEvents":         "events",
}

// unusedGrants are the actions a role grants that the flow does not call,
// each with why it is granted. An unused grant not listed here is a finding
// (remove it from template.yaml, or say here why it stays); a listed one the
// flow calls is stale.
var unusedGrants = map[string]map[string]string{
	"AuthorizeFunction": {
		"logs:CreateLogStream": "Lambda's platform writes the function's logs, not the code",
		"logs:PutLogEvents":    "as logs:CreateLogStream",
	},
	"CallbackFunction": {
		"logs:CreateLogStream": "Lambda's platform writes the function's logs, not the code",
		"logs:PutLogEvents":    "as logs:CreateLogStream",
		"events:PutEvents": "the callback publishes created only when it stores a grant at once (ConnectionConfirmation=off, " +
			"or a client_credentials connect); with the stack's default the confirm route does",
	},
	"RefreshFunction": {
		"logs:CreateLogStream": "Lambda's platform writes the function's logs, not the code",
		"logs:PutLogEvents":    "as logs:CreateLogStream",
	},
	"TokenFunction": {
		"logs:CreateLogStream": "Lambda's platform writes the function's logs, not the code",
		"logs:PutLogEvents":    "as logs:CreateLogStream",
	},
}

// notEvaluatedByMoto are the parts of the roles' grants moto 5.2.1 does
// not evaluate (moto.EnforceIAM); templatecheck's TestIAMLeastPrivilege
// keeps checking them on the template.
var notEvaluatedByMoto = []string{
	"resource ARNs: moto matches every statement against the resource \"*\" for DynamoDB, KMS, Secrets Manager and EventBridge, so the roles' statements are re-put with Resource \"*\" and only their actions are checked",
	"dynamodb:LeadingKeys (ForAllValues:StringLike): identity-policy conditions get no request context in moto and always hold",
	"kms:EncryptionContext:* (StringEquals, StringEqualsIfExists): as dynamodb:LeadingKeys; moto's KMS itself refuses a Decrypt under a different encryption context",
	"the roles' trust policies (Service lambda.amazonaws.com): moto cannot evaluate a Service principal, so the roles are assumed before enforcement is on",
}

// TestLiveRehearsal runs steps 3 to 5 of the rehearsal on one stack:
//
//  3. the transformed template, with samconfig.toml's default parameters,
//     creates a stack on moto's CloudFormation, the functions' zips in
//     moto's S3: CREATE_COMPLETE and every resource the template declares;
//  4. each function's configuration is read back from moto's Lambda and its
//     built bootstrap runs under the Lambda emulator with exactly that
//     environment, on the stack's table, key, keys secret and bus: connect,
//     consent, callback, token read, the scheduled refresh, a forced
//     token read, a refresh the provider refuses (needs_reauth) and delete;
//  5. each function runs with its own role's credentials under moto's IAM
//     enforcement: an action the template does not grant fails (a copy of
//     the template without one grant proves it), and a grant the flow does
//     not use is reported.
func TestLiveRehearsal(t *testing.T) {
	began := time.Now()
	params, err := samconfig.DeployParameters("default")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// The test's own values: its origin, the custom domain (moto creates no
	// API for an execute-api URL) and the catalog file with the test
	// provider, the parameters an operator sets for catalog additions.
	params["ReturnOrigins"] = appOrigin
	params["BaseUrl"] = baseURL
	params["ProvidersFile"] = filepath.Join(dir, "providers.yaml")
	const bucket = "aws-sam-cli-managed-default-samclisourcebucket-rehearsal"

	prov := providertest.New(t, providertest.Config{
		ClientID: clientID, ClientSecret: clientSecret, RedirectURI: baseURL + "/callback/acme",
		ClientAuth: "basic", TokenRequest: "form", RequirePKCE: true, Scopes: []string{"read", "write"},
		AccessTokenTTL: time.Hour, RotateRefreshTokens: true,
	})
	catalog := "providers:\n  acme:\n    display_name: Acme\n    authorization_url: " + prov.AuthorizeURL() +
		"\n    token_url: " + prov.TokenURL() + "\n    revocation_url: " + prov.RevokeURL() +
		"\n    grant_types: [authorization_code, refresh_token]\n    client_auth: basic\n    token_request: form\n    default_scopes: [read]\n"
	if err := os.WriteFile(params["ProvidersFile"], []byte(catalog), 0o600); err != nil {
		t.Fatal(err)
	}

	// The preparations at once: the bootstraps, the two transforms (the
	// template, and its copy without one grant) and moto.
	seededPath := seedMissingGrant(t, dir)
	python := pytools.Python(t)
	req := samtransform.Request{Parameters: params, Bucket: bucket, Region: moto.Region}
	var (
		wg                 sync.WaitGroup
		bins               map[string]string
		buildErr           error
		main, seeded       []byte
		mainErr, seededErr error
	)
	wg.Go(func() { bins, buildErr = buildBootstraps(filepath.Join(dir, "bin")) })
	wg.Go(func() { main, mainErr = samtransform.Run(t.Context(), python, templatePath(t), req) })
	wg.Go(func() { seeded, seededErr = samtransform.Run(t.Context(), python, seededPath, req) })
	srv := moto.StartEnforcing(t)
	wg.Wait()
	for _, err := range []error{buildErr, mainErr, seededErr} {
		if err != nil {
			t.Fatal(err)
		}
	}
	prepared := time.Since(began)

	acct := srv.NewAccount(t)
	acct.AllowAll(t)
	admin := acct.Config()
	sums := upload(t, admin, bucket, bins)
	uploaded := time.Since(began)
	stack := createStack(t, admin, "oauthbroker", main, params)
	broken := createStack(t, admin, "oauthbroker-seeded", seeded, params)
	created := time.Since(began)
	t.Logf("prepared %v, uploaded %v, created %v", prepared, uploaded, created)

	if !t.Run("step 3 stack", func(t *testing.T) { checkResources(t, stack) }) {
		return
	}

	var fns map[string]*running
	var flowOK bool
	t.Run("step 4 flow on the stack's configuration", func(t *testing.T) {
		// What CloudFormation would have created and moto does not, and
		// what the operator does after the first deploy (README).
		keysName := stack.createSecret(t, acct, "SigningKeysSecret")
		acct.PutSecret(t, stack.param("SecretsPrefix")+"provider/acme", `{"client_id":"`+clientID+`","client_secret":"`+clientSecret+`"}`)
		fns = map[string]*running{}
		for id := range functionPackages {
			fns[id] = &running{function: stack.functionConfig(t, admin, id, sums[id])}
		}
		bad := &running{function: broken.functionConfig(t, admin, "AuthorizeFunction", sums["AuthorizeFunction"])}
		if t.Failed() {
			return
		}
		subscriber := acct.Subscribe(t, fns["RefreshFunction"].env["EVENT_BUS_NAME"], awsstack.AllEvents)

		// Step 5's credentials: each function's own role, assumed before
		// enforcement (see notEvaluatedByMoto), the roles' statements on
		// any resource (ditto).
		for _, f := range append(slices.Collect(maps.Values(fns)), bad) {
			f.creds = acct.AssumeRole(t, aws.ToString(f.config.Role), aws.ToString(f.config.FunctionName))
			logcheck.Register(f.creds.SecretAccessKey, f.creds.SessionToken)
			acct.RoleGrantsAnyResource(t, f.role)
		}
		srv.EnforceIAM(t)
		for _, f := range append(slices.Collect(maps.Values(fns)), bad) {
			f.start(t, acct, bins[f.id])
		}
		fns["seeded"] = bad

		keys := signingKeys(t, admin, keysName)
		flowOK = runFlow(t, flowParts{
			fns: fns, keys: keys, prov: prov, events: subscriber, schedule: stack.scheduleInput(t, "RefreshFunction"),
			store: setup.Store(dynamodb.NewFromConfig(admin), kms.NewFromConfig(admin), setup.Env{
				TableName: fns["TokenFunction"].env["TABLE_NAME"], TokenKeyID: fns["TokenFunction"].env["TOKEN_KEY_ID"],
			}),
		})
		t.Log("the refresh function ran with the Input of the stack's schedule as the transformed template gives it: moto's CloudFormation creates no AWS::Scheduler::Schedule")
	})
	if fns == nil || !flowOK {
		return
	}

	t.Run("step 5 own roles", func(t *testing.T) {
		for _, id := range slices.Sorted(maps.Keys(functionPackages)) {
			f := fns[id]
			called := f.actions(t, true)
			granted := stack.grants(getAtt(t, stack.tpl.Resources[id].Properties["Role"], "Arn"))
			for a := range called {
				if !granted[a] {
					t.Errorf("%s called %s, which its role does not grant, and moto let it", id, a)
				}
			}
			var unused []string
			for a := range granted {
				if called[a] {
					if why, listed := unusedGrants[id][a]; listed {
						t.Errorf("%s: %s is listed as unused (%s) but the flow calls it: delete the entry", id, a, why)
					}
					continue
				}
				unused = append(unused, a)
				if _, listed := unusedGrants[id][a]; !listed {
					t.Errorf("%s: its role grants %s, which the flow never calls: a finding (remove the grant, or say in unusedGrants why it stays)", id, a)
				}
			}
			slices.Sort(unused)
			t.Logf("%s called %v; granted and unused: %v", id, slices.Sorted(maps.Keys(called)), unused)
		}
		for _, gap := range notEvaluatedByMoto {
			t.Logf("not evaluated by moto (templatecheck TestIAMLeastPrivilege checks it): %s", gap)
		}
	})
	t.Logf("rehearsal: prepared in %v, stacks created at %v, done in %v; the stack has %d resources (%d created by moto's CloudFormation)",
		prepared.Round(time.Millisecond), created.Round(time.Millisecond), time.Since(began).Round(time.Millisecond), len(stack.tpl.Resources), len(stack.resources))
}

// seedMissingGrant writes a copy of template.yaml without the authorize
// role's dynamodb:PutItem statements (PutPendingStates on state#… keys and
// RecordLinkUses on link#… keys: moto does not evaluate LeadingKeys, so
// either alone grants both) and returns its path.
func seedMissingGrant(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.ReadFile(templatePath(t))
	if err != nil {
		t.Fatal(err)
	}
	const from, to = "              - Sid: PutPendingStates\n", "              # Seals a state's PKCE verifier"
	i, j := bytes.Index(src, []byte(from)), bytes.Index(src, []byte(to))
	if i < 0 || j < i || bytes.Count(src, []byte(from)) != 1 {
		t.Fatalf("template.yaml: no single PutPendingStates statement before %q: update seedMissingGrant", to)
	}
	p := filepath.Join(dir, "template-without-put-pending-states.yaml")
	if err := os.WriteFile(p, append(src[:i:i], src[j:]...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkResources is step 3's check: every resource the transformed
// template declares exists in the stack with its type, CREATE_COMPLETE,
// but for the types moto's CloudFormation does not create.
func checkResources(t *testing.T, s *createdStack) {
	missing := map[string]int{}
	for id, r := range s.tpl.Resources {
		got, ok := s.resources[id]
		switch {
		case ok && aws.ToString(got.ResourceType) != r.Type:
			t.Errorf("%s is a %s in the stack, the template declares %s", id, aws.ToString(got.ResourceType), r.Type)
		case ok && got.ResourceStatus != "CREATE_COMPLETE":
			t.Errorf("%s: %s, want CREATE_COMPLETE", id, got.ResourceStatus)
		case !ok && motoCreatesNot[r.Type] == "":
			t.Errorf("%s (%s) is missing from the stack", id, r.Type)
		case !ok:
			missing[r.Type]++
		}
	}
	for id := range s.resources {
		if _, ok := s.tpl.Resources[id]; !ok {
			t.Errorf("the stack has %s, which the template does not declare", id)
		}
	}
	n := 0
	for _, typ := range slices.Sorted(maps.Keys(motoCreatesNot)) {
		if missing[typ] == 0 {
			t.Errorf("moto's CloudFormation now creates %s (or the template has none): delete its motoCreatesNot entry", typ)
		}
		n += missing[typ]
		t.Logf("moto gap: %d %s not created: %s", missing[typ], typ, motoCreatesNot[typ])
	}
	if s.unnamed != n {
		t.Errorf("the stack lists %d resources without a logical id, want the %d moto does not create", s.unnamed, n)
	}
	t.Logf("the transformed template declares %d resources; moto's CloudFormation created %d of them, CREATE_COMPLETE", len(s.tpl.Resources), len(s.resources))
}

// running is a function of the stack running under the emulator.
type running struct {
	function
	creds aws.Credentials
	fn    *lambdarie.Function
	calls *moto.Proxy // what it asked of AWS
	added []string    // the variables added to the stack's environment
}

// start runs the function's bootstrap under the emulator with exactly its
// configuration's environment, plus what Lambda itself sets and the
// endpoints of moto (see additions).
func (f *running) start(t *testing.T, acct *moto.Account, bin string) {
	t.Helper()
	_, f.calls = acct.Proxied(t)
	env := map[string]string{}
	for k, v := range f.env {
		env[k] = v
	}
	for k, v := range f.additions() {
		if _, clash := env[k]; clash {
			t.Fatalf("%s: the stack's environment sets %s, which the rehearsal adds", f.id, k)
		}
		env[k] = v
		f.added = append(f.added, k)
	}
	slices.Sort(f.added)
	f.fn = lambdarie.Start(t, bin, env)
}

// additions are the only variables the rehearsal adds to a function's
// environment: what Lambda sets in every execution environment (the
// region, the role's temporary credentials, the function's name, timeout,
// memory and handler), and the endpoints of the four services the
// functions call, pointing at moto through a recording proxy. lambdarie
// adds PATH, HOME (an empty directory), AWS_DEFAULT_REGION (Lambda sets it
// too), AWS_EC2_METADATA_DISABLED and AWS_LAMBDA_FUNCTION_VERSION.
func (f *running) additions() map[string]string {
	c := f.config
	return map[string]string{
		"AWS_REGION":                       moto.Region,
		"AWS_ACCESS_KEY_ID":                f.creds.AccessKeyID,
		"AWS_SECRET_ACCESS_KEY":            f.creds.SecretAccessKey,
		"AWS_SESSION_TOKEN":                f.creds.SessionToken,
		"AWS_LAMBDA_FUNCTION_NAME":         aws.ToString(c.FunctionName),
		"AWS_LAMBDA_FUNCTION_TIMEOUT":      strconv.Itoa(int(aws.ToInt32(c.Timeout))),
		"AWS_LAMBDA_FUNCTION_MEMORY_SIZE":  strconv.Itoa(int(aws.ToInt32(c.MemorySize))),
		"_HANDLER":                         aws.ToString(c.Handler),
		"AWS_ENDPOINT_URL_DYNAMODB":        f.calls.URL,
		"AWS_ENDPOINT_URL_KMS":             f.calls.URL,
		"AWS_ENDPOINT_URL_SECRETS_MANAGER": f.calls.URL,
		"AWS_ENDPOINT_URL_EVENTBRIDGE":     f.calls.URL,
	}
}

// actions returns the IAM actions the function called; with allowed, it
// fails the test for each call moto refused (403).
func (f *running) actions(t *testing.T, allowed bool) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, c := range f.calls.All() {
		svc, ok := serviceOfTarget[c.Service]
		if !ok {
			t.Errorf("%s called %s.%s, a service the rehearsal does not map to IAM", f.id, c.Service, c.Operation)
			continue
		}
		a := svc + ":" + c.Operation
		out[a] = true
		if allowed && c.Status == http.StatusForbidden {
			t.Errorf("%s: moto refused %s to its role", f.id, a)
		}
	}
	return out
}

// signingKeys reads the keyset the backend signs connect links with.
func signingKeys(t *testing.T, cfg aws.Config, name string) *signing.Keyset {
	t.Helper()
	out, err := secretsmanager.NewFromConfig(cfg).GetSecretValue(t.Context(), &secretsmanager.GetSecretValueInput{SecretId: &name})
	if err != nil {
		t.Fatalf("get secret %s: %v", name, err)
	}
	ks, err := signing.ParseKeyset([]byte(aws.ToString(out.SecretString)))
	if err != nil {
		t.Fatalf("secret %s: %v", name, err)
	}
	return ks
}

// flowParts is what the flow runs on.
type flowParts struct {
	fns      map[string]*running
	keys     *signing.Keyset
	prov     *providertest.Server
	events   *moto.Subscriber
	schedule []byte
	store    *dynamo.Store
}

// runFlow is step 4's flow, and the seeded stack's connect; it reports
// whether the flow got to its end.
func runFlow(t *testing.T, p flowParts) bool {
	t.Helper()
	const id = "customer-rehearsal"
	q, err := signing.SignLink(p.keys, signing.Link{Provider: "acme", ConnectionID: id, ReturnTo: returnTo, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	v, _ := url.ParseQuery(q)
	logcheck.Register(v.Get("sig"))

	// connect → consent → callback
	resp := invoke(t, p.fns["AuthorizeFunction"], sampleevent.Load(t, "connect.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, "acme", "connect", q)
	}))
	if resp.StatusCode != http.StatusFound || len(resp.Cookies) != 2 {
		t.Fatalf("connect: %d, %d cookies (want the flow's binding and the link's), %s", resp.StatusCode, len(resp.Cookies), resp.Body)
	}
	authURL, err := url.Parse(resp.Headers["Location"])
	if err != nil {
		t.Fatal(err)
	}
	cookie, _, _ := strings.Cut(resp.Cookies[0], ";")
	linkCookie, _, _ := strings.Cut(resp.Cookies[1], ";")
	logcheck.Register(authURL.Query().Get("state"), cookie[strings.IndexByte(cookie, '=')+1:], linkCookie[strings.IndexByte(linkCookie, '=')+1:])
	back := consent(t, authURL)
	logcheck.Register(back.Query().Get("code"))
	resp = invoke(t, p.fns["CallbackFunction"], sampleevent.Load(t, "callback.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, "acme", "callback", back.RawQuery)
		ev.Cookies = []string{cookie}
	}))
	// The stack's default, ConnectionConfirmation=required: the grant
	// waits for the app's confirmation, and no token is served until then.
	ret, err := url.Parse(resp.Headers["Location"])
	if err != nil || resp.StatusCode != http.StatusFound || ret.Query().Get("status") != "pending" || ret.Query().Get("confirmation") == "" {
		t.Fatalf("callback: %d %v %s, want a return with status=pending and a confirmation code", resp.StatusCode, resp.Headers, resp.Body)
	}
	code := ret.Query().Get("confirmation")
	logcheck.Register(code)
	resp = invoke(t, p.fns["TokenFunction"], sampleevent.Load(t, "token.json", func(ev *events.APIGatewayV2HTTPRequest) {
		tokenPath(ev, id, "/connections/acme/"+id+"/token")
	}))
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("token read before the confirmation: %d %s, want 404", resp.StatusCode, resp.Body)
	}
	resp = invoke(t, p.fns["TokenFunction"], sampleevent.Load(t, "confirm.json", func(ev *events.APIGatewayV2HTTPRequest) {
		tokenPath(ev, id, "/connections/acme/"+id+"/confirm")
		ev.Body = `{"confirmation":"` + code + `"}`
	}))
	if resp.StatusCode != http.StatusOK || !strings.Contains(resp.Body, `"status":"connected"`) {
		t.Fatalf("confirm: %d %s, want 200 connected", resp.StatusCode, resp.Body)
	}
	wantEvents(t, p.events, "oauthbroker.connection.created")

	// token read
	first := tokenRead(t, p, id, "")

	// the scheduled refresh, with the schedule's own input
	c, err := p.store.GetConnection(t.Context(), "acme", id)
	if err != nil {
		t.Fatal(err)
	}
	c.NextRefresh = time.Now().Add(-time.Minute)
	if _, err := p.store.SaveConnection(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	out, err := p.fns["RefreshFunction"].fn.Invoke(t.Context(), p.schedule)
	if err != nil {
		t.Fatalf("refresh: %v %s", err, out)
	}
	var sum map[string]int
	if err := json.Unmarshal(out, &sum); err != nil || sum["due"] != 1 || sum["refreshed"] != 1 {
		t.Fatalf("refresh summary %s (%v), want one due and refreshed", out, err)
	}
	second := tokenRead(t, p, id, "")
	if second == first {
		t.Errorf("the token read after the refresh is the one before it")
	}
	// an on-demand renewal (the token function's lease, write and seal)
	if forced := tokenRead(t, p, id, "force_refresh=true"); forced == second {
		t.Errorf("the forced token read returned the token it was to replace")
	}

	// a refresh the provider refuses: needs_reauth, published by the
	// refresh function
	if c, err = p.store.GetConnection(t.Context(), "acme", id); err != nil {
		t.Fatal(err)
	}
	p.prov.RevokeRefresh(c.RefreshToken)
	c.NextRefresh = time.Now().Add(-time.Minute)
	if _, err := p.store.SaveConnection(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if out, err = p.fns["RefreshFunction"].fn.Invoke(t.Context(), p.schedule); err != nil {
		t.Fatalf("refresh: %v %s", err, out)
	}
	if err := json.Unmarshal(out, &sum); err != nil || sum["due"] != 1 || sum["needs_reauth"] != 1 {
		t.Fatalf("refresh summary %s (%v), want one due and needs_reauth", out, err)
	}
	wantEvents(t, p.events, "oauthbroker.connection.needs_reauth")

	// delete
	resp = invoke(t, p.fns["TokenFunction"], sampleevent.Load(t, "delete.json", func(ev *events.APIGatewayV2HTTPRequest) {
		tokenPath(ev, id, "/connections/acme/"+id)
	}))
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("delete: %d %s", resp.StatusCode, resp.Body)
	}
	wantEvents(t, p.events, "oauthbroker.connection.deleted")
	if _, err := p.store.GetConnection(t.Context(), "acme", id); err != store.ErrNotFound {
		t.Errorf("connection after delete: %v, want store.ErrNotFound", err)
	}
	// A grant never confirmed: once it expires, the refresh function
	// revokes it at the provider, drops it and publishes abandoned.
	access, refresh := p.prov.IssueGrant("read")
	logcheck.Register(access, refresh)
	abandoned := store.Key{Provider: "acme", ConnectionID: "customer-never-confirmed", Pending: signing.Hash("rehearsal-code")}
	if err := p.store.PutPending(t.Context(), store.PendingGrant{Key: abandoned, ExpiresAt: time.Now().Add(-time.Minute),
		Connection: store.Connection{AccessToken: access, RefreshToken: refresh, Grant: "authorization_code", Scope: "read"}}); err != nil {
		t.Fatal(err)
	}
	if out, err = p.fns["RefreshFunction"].fn.Invoke(t.Context(), p.schedule); err != nil {
		t.Fatalf("refresh: %v %s", err, out)
	}
	if err := json.Unmarshal(out, &sum); err != nil || sum["due"] != 1 || sum["revoked"] != 1 {
		t.Fatalf("refresh summary %s (%v), want one due and revoked", out, err)
	}
	if p.prov.ValidRefresh(refresh) {
		t.Errorf("the unconfirmed grant's refresh token is still valid at the provider")
	}
	wantEvents(t, p.events, "oauthbroker.connection.abandoned")
	logcheck.Register(p.prov.Credentials()...)

	// The seeded stack's authorize, whose role lacks dynamodb:PutItem:
	// the same connect fails, refused by moto's IAM at the link's use.
	resp = invoke(t, p.fns["seeded"], sampleevent.Load(t, "connect.json", func(ev *events.APIGatewayV2HTTPRequest) {
		sampleevent.SetQuery(ev, "acme", "connect", q)
	}))
	refused := 0
	for _, c := range p.fns["seeded"].calls.All() {
		if c.Service == "DynamoDB_20120810" && c.Operation == "PutItem" && c.Status == http.StatusForbidden {
			refused++
		}
	}
	if resp.StatusCode < 500 || refused != 1 {
		t.Errorf("connect on the stack whose authorize role lacks dynamodb:PutItem: %d, %d PutItem refused; want a 5xx and one refused", resp.StatusCode, refused)
	} else {
		t.Logf("without the PutItem grants, connect answers %d: moto refused dynamodb:PutItem to the role", resp.StatusCode)
	}
	for _, f := range p.fns {
		t.Logf("%s ran with the stack's %d variables plus %v", f.id, len(f.env), f.added)
	}
	return !t.Failed()
}

// tokenRead invokes the token route for id with the raw query and returns
// the access token, which must be one the provider issued.
func tokenRead(t *testing.T, p flowParts, id, query string) string {
	t.Helper()
	resp := invoke(t, p.fns["TokenFunction"], sampleevent.Load(t, "token.json", func(ev *events.APIGatewayV2HTTPRequest) {
		tokenPath(ev, id, "/connections/acme/"+id+"/token")
		ev.RawQueryString, ev.QueryStringParameters = query, nil
		if k, v, ok := strings.Cut(query, "="); ok {
			ev.QueryStringParameters = map[string]string{k: v}
		}
	}))
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(resp.Body), &body) != nil || !p.prov.Valid(body.AccessToken) {
		t.Fatalf("token read: %d, want 200 with a valid access token of the provider", resp.StatusCode)
	}
	return body.AccessToken
}

// wantEvents receives the next events of the subscriber and checks their
// detail-types.
func wantEvents(t *testing.T, s *moto.Subscriber, types ...string) {
	t.Helper()
	got := s.Receive(t, len(types), 10*time.Second)
	for i, e := range got {
		if i < len(types) && e.DetailType != types[i] {
			t.Errorf("event %d: %s, want %s", i, e.DetailType, types[i])
		}
	}
}

func consent(t *testing.T, authURL *url.URL) *url.URL {
	t.Helper()
	hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := hc.Get(authURL.String())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("provider authorize: %d", resp.StatusCode)
	}
	u, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func tokenPath(ev *events.APIGatewayV2HTTPRequest, id, path string) {
	ev.PathParameters = map[string]string{"provider": "acme", "connection_id": id}
	ev.RawPath, ev.RequestContext.HTTP.Path = path, path
}

func invoke(t *testing.T, f *running, ev []byte) events.APIGatewayV2HTTPResponse {
	t.Helper()
	out, err := f.fn.Invoke(withContext(t), ev)
	if err != nil {
		t.Fatalf("invoke %s: %v\n%s", f.id, err, out)
	}
	var resp events.APIGatewayV2HTTPResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("invoke %s: response %s: %v", f.id, out, err)
	}
	return resp
}
