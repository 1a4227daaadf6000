package rehearsal

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudformation"
	cfntypes "github.com/aws/aws-sdk-go-v2/service/cloudformation/types"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/lambda"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/lambdarie"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/moto"
)

// cfnResource is a resource of the transformed template.
type cfnResource struct {
	Type       string
	Properties map[string]any
}

// cfnTemplate is the transformed template, as CloudFormation reads it.
type cfnTemplate struct {
	Parameters map[string]map[string]any
	Resources  map[string]cfnResource
}

// motoCreatesNot are the resource types of the transformed template that
// moto 5.2.1's CloudFormation does not create (it logs "No Moto
// CloudFormation support", lists the resource without logical id, type or
// physical id, and still reports CREATE_COMPLETE), with what the rehearsal
// does instead. The test fails if one of them is created after all (delete
// the entry) or if another type is missing.
var motoCreatesNot = map[string]string{
	"AWS::ApiGatewayV2::Api":         "the functions are invoked with the events API Gateway sends (events/*.json); templatecheck checks routes → functions and AWS_IAM on the token routes",
	"AWS::ApiGatewayV2::Integration": "as AWS::ApiGatewayV2::Api",
	"AWS::ApiGatewayV2::Route":       "as AWS::ApiGatewayV2::Api",
	"AWS::ApiGatewayV2::Stage":       "as AWS::ApiGatewayV2::Api",
	"AWS::Lambda::EventInvokeConfig": "nothing invokes asynchronously here; templatecheck checks the refresh function's retry settings",
	"AWS::Scheduler::Schedule":       "the refresh function is invoked with the schedule's Input as the transformed template gives it",
	"AWS::SecretsManager::Secret":    "the test creates the signing-keys secret from its resource's properties (Name, GenerateSecretString) with moto's GetRandomPassword, as CloudFormation would",
}

// functionPackages maps each function's logical id to its Go package.
var functionPackages = map[string]string{
	"AuthorizeFunction": "./functions/authorize",
	"CallbackFunction":  "./functions/callback",
	"RefreshFunction":   "./functions/refresh",
	"TokenFunction":     "./functions/token",
}

// buildBootstraps builds every function with the Makefile's recipe for this
// machine's architecture (the emulator runs them here) into dir, and
// returns each function's bootstrap by logical id. It returns an error,
// not t.Fatal, so that it may run beside the other preparations.
func buildBootstraps(dir string) (map[string]string, error) {
	var pkgs []string
	for _, p := range functionPackages {
		pkgs = append(pkgs, p)
	}
	slices.Sort(pkgs)
	if err := lambdarie.MakeBootstrap(runtime.GOARCH, dir+string(filepath.Separator), nil, pkgs...); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for id, p := range functionPackages {
		out[id] = filepath.Join(dir, filepath.Base(p))
	}
	return out, nil
}

// upload puts each function's zip where the transformed template says its
// code is (as `sam package` does) and returns each zip's SHA-256 in
// Lambda's CodeSha256 form.
func upload(t *testing.T, cfg aws.Config, bucket string, bins map[string]string) map[string]string {
	t.Helper()
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		// No aws-chunked checksum trailer, which moto decodes slowly.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
	if _, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: &bucket}); err != nil {
		t.Fatalf("s3 create bucket %s: %v", bucket, err)
	}
	sums := map[string]string{}
	for id, bin := range bins {
		// Stored, not deflated: flate under the race detector takes
		// seconds per bootstrap.
		z, err := lambdarie.Zip(bin, zip.Store)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: &bucket, Key: aws.String(id + ".zip"), Body: bytes.NewReader(z)}); err != nil {
			t.Fatalf("s3 put %s.zip: %v", id, err)
		}
		sum := sha256.Sum256(z)
		sums[id] = base64.StdEncoding.EncodeToString(sum[:])
	}
	return sums
}

// createdStack is a stack moto's CloudFormation created.
type createdStack struct {
	name      string
	tpl       *cfnTemplate
	params    map[string]string
	resources map[string]cfntypes.StackResourceSummary // by logical id
	unnamed   int                                      // summaries without a logical id
}

// createStack creates the stack name from the transformed template with
// params, as `sam deploy` would (CAPABILITY_IAM), and waits until it is
// done.
func createStack(t *testing.T, cfg aws.Config, name string, transformed []byte, params map[string]string) *createdStack {
	t.Helper()
	tpl := &cfnTemplate{}
	if err := json.Unmarshal(transformed, tpl); err != nil {
		t.Fatalf("transformed template: %v", err)
	}
	client := cloudformation.NewFromConfig(cfg)
	var ps []cfntypes.Parameter
	for k, v := range params {
		ps = append(ps, cfntypes.Parameter{ParameterKey: aws.String(k), ParameterValue: aws.String(v)})
	}
	ctx := t.Context()
	if _, err := client.CreateStack(ctx, &cloudformation.CreateStackInput{
		StackName: &name, TemplateBody: aws.String(string(transformed)), Parameters: ps,
		Capabilities: []cfntypes.Capability{cfntypes.CapabilityCapabilityIam},
	}); err != nil {
		t.Fatalf("create stack %s: %v", name, err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		out, err := client.DescribeStacks(ctx, &cloudformation.DescribeStacksInput{StackName: &name})
		if err != nil {
			t.Fatalf("describe stack %s: %v", name, err)
		}
		st := out.Stacks[0]
		if !strings.HasSuffix(string(st.StackStatus), "_IN_PROGRESS") {
			if st.StackStatus != cfntypes.StackStatusCreateComplete {
				t.Fatalf("stack %s: %s (%s), want CREATE_COMPLETE", name, st.StackStatus, aws.ToString(st.StackStatusReason))
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("stack %s still %s after 30 s", name, st.StackStatus)
		}
	}
	s := &createdStack{name: name, tpl: tpl, params: params, resources: map[string]cfntypes.StackResourceSummary{}}
	pages := cloudformation.NewListStackResourcesPaginator(client, &cloudformation.ListStackResourcesInput{StackName: &name})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			t.Fatalf("list resources of %s: %v", name, err)
		}
		for _, r := range page.StackResourceSummaries {
			id := aws.ToString(r.LogicalResourceId)
			if id == "" {
				s.unnamed++
				continue
			}
			if _, dup := s.resources[id]; dup {
				t.Errorf("stack %s lists %s twice", name, id)
			}
			s.resources[id] = r
		}
	}
	return s
}

// physical returns the physical id of the stack's resource id.
func (s *createdStack) physical(t *testing.T, id string) string {
	t.Helper()
	r, ok := s.resources[id]
	if !ok || aws.ToString(r.PhysicalResourceId) == "" {
		t.Fatalf("stack %s has no physical resource for %s", s.name, id)
	}
	return aws.ToString(r.PhysicalResourceId)
}

// param returns a parameter's value in the stack: given, or its default.
func (s *createdStack) param(name string) string {
	if v, ok := s.params[name]; ok {
		return v
	}
	return fmt.Sprint(s.tpl.Parameters[name]["Default"])
}

// sub resolves a Fn::Sub string of parameter references only.
func (s *createdStack) sub(t *testing.T, v any) string {
	t.Helper()
	m, ok := v.(map[string]any)
	str, isStr := m["Fn::Sub"].(string)
	if !ok || !isStr {
		t.Fatalf("%v: want a Fn::Sub of a string", v)
	}
	for name := range s.tpl.Parameters {
		str = strings.ReplaceAll(str, "${"+name+"}", s.param(name))
	}
	if strings.Contains(str, "${") {
		t.Fatalf("%v: refers to more than parameters", v)
	}
	return str
}

// createSecret creates the AWS::SecretsManager::Secret id of the template
// as CloudFormation would (moto's does not): its Name, and a
// GenerateSecretString's SecretStringTemplate with GenerateStringKey set to
// a password of PasswordLength, without punctuation if ExcludePunctuation.
// It returns the secret's name.
func (s *createdStack) createSecret(t *testing.T, acct *moto.Account, id string) string {
	t.Helper()
	p := s.tpl.Resources[id].Properties
	name := s.sub(t, p["Name"])
	gen, _ := p["GenerateSecretString"].(map[string]any)
	var value map[string]any
	if err := json.Unmarshal([]byte(fmt.Sprint(gen["SecretStringTemplate"])), &value); err != nil {
		t.Fatalf("%s SecretStringTemplate: %v", id, err)
	}
	length, err := strconv.ParseInt(fmt.Sprint(gen["PasswordLength"]), 10, 64)
	if err != nil {
		t.Fatalf("%s PasswordLength: %v", id, err)
	}
	pw, err := secretsmanager.NewFromConfig(acct.Config()).GetRandomPassword(t.Context(), &secretsmanager.GetRandomPasswordInput{
		PasswordLength: &length, ExcludePunctuation: aws.Bool(gen["ExcludePunctuation"] == true),
	})
	if err != nil {
		t.Fatalf("get random password: %v", err)
	}
	value[fmt.Sprint(gen["GenerateStringKey"])] = aws.ToString(pw.RandomPassword)
	b, _ := json.Marshal(value)
	acct.PutSecret(t, name, string(b))
	return name
}

// function is a function of the stack as Lambda holds it.
type function struct {
	id     string // logical id
	config *lambda.GetFunctionConfigurationOutput
	env    map[string]string // the configuration's environment
	role   string            // its role's name
}

// functionConfig reads back the function id from moto's Lambda and checks
// it against the transformed template: handler, runtime, timeout, memory,
// role, the environment's variables, the code (the zip uploaded), and,
// where moto does not keep them (architectures, layers, logging config),
// says so.
func (s *createdStack) functionConfig(t *testing.T, cfg aws.Config, id, codeSha string) function {
	t.Helper()
	cfg.HTTPClient = stringEnvironment{cfg.HTTPClient}
	out, err := lambda.NewFromConfig(cfg).GetFunctionConfiguration(t.Context(), &lambda.GetFunctionConfigurationInput{FunctionName: aws.String(s.physical(t, id))})
	if err != nil {
		t.Fatalf("lambda get function configuration %s: %v", id, err)
	}
	p := s.tpl.Resources[id].Properties
	want := func(field string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s %s = %v, the template says %v", id, field, got, want)
		}
	}
	want("Handler", aws.ToString(out.Handler), p["Handler"])
	want("Runtime", out.Runtime, p["Runtime"])
	want("Timeout", aws.ToInt32(out.Timeout), p["Timeout"])
	want("MemorySize", aws.ToInt32(out.MemorySize), p["MemorySize"])
	want("CodeSha256", aws.ToString(out.CodeSha256), codeSha)
	roleID := getAtt(t, p["Role"], "Arn")
	role, err := iam.NewFromConfig(cfg).GetRole(t.Context(), &iam.GetRoleInput{RoleName: aws.String(s.physical(t, roleID))})
	if err != nil {
		t.Fatalf("iam get role of %s: %v", id, err)
	}
	want("Role", aws.ToString(out.Role), aws.ToString(role.Role.Arn))

	vars, _ := p["Environment"].(map[string]any)["Variables"].(map[string]any)
	var names []string
	for k := range vars {
		names = append(names, k)
	}
	f := function{id: id, config: out, role: aws.ToString(role.Role.RoleName), env: map[string]string{}}
	if out.Environment != nil {
		f.env = out.Environment.Variables
	}
	var got []string
	for k := range f.env {
		got = append(got, k)
	}
	slices.Sort(names)
	slices.Sort(got)
	want("Environment variables", got, names)

	// Moto's CloudFormation passes only some properties on to Lambda
	// (moto/awslambda/models.py, create_from_cloudformation_json).
	var layers []string
	for _, l := range out.Layers {
		layers = append(layers, aws.ToString(l.Arn))
	}
	if len(layers) != 0 || len(out.Architectures) != 1 || out.Architectures[0] != "x86_64" {
		t.Errorf("%s: moto now keeps Architectures %v or Layers %v: check them against the template and update this", id, out.Architectures, layers)
	}
	want("Architectures (template)", p["Architectures"], []any{"arm64"})
	want("Layers (template, ProvidersLayerArn empty)", resolvedLayers(p["Layers"]), []string{})
	return f
}

// resolvedLayers is a function's Layers with ProvidersLayerArn empty:
// SAM's Fn::If on HasProvidersLayer yields AWS::NoValue.
func resolvedLayers(v any) []string {
	out := []string{}
	for _, l := range asList(v) {
		if m, ok := l.(map[string]any); ok {
			if cond, ok := m["Fn::If"].([]any); ok && len(cond) == 3 && cond[0] == "HasProvidersLayer" {
				if no, ok := cond[2].(map[string]any); ok && no["Ref"] == "AWS::NoValue" {
					continue
				}
			}
		}
		out = append(out, fmt.Sprint(l))
	}
	return out
}

func asList(v any) []any {
	switch x := v.(type) {
	case nil:
		return nil
	case []any:
		return x
	default:
		return []any{x}
	}
}

// getAtt returns the resource of a Fn::GetAtt of attr.
func getAtt(t *testing.T, v any, attr string) string {
	t.Helper()
	m, _ := v.(map[string]any)
	a, _ := m["Fn::GetAtt"].([]any)
	if len(a) != 2 || a[1] != attr {
		t.Fatalf("%v: want Fn::GetAtt [resource, %s]", v, attr)
	}
	return fmt.Sprint(a[0])
}

// grants returns the actions the inline policies of the role id allow.
func (s *createdStack) grants(id string) map[string]bool {
	out := map[string]bool{}
	for _, p := range asList(s.tpl.Resources[id].Properties["Policies"]) {
		doc, _ := p.(map[string]any)["PolicyDocument"].(map[string]any)
		for _, st := range asList(doc["Statement"]) {
			if m, _ := st.(map[string]any); m["Effect"] == "Allow" {
				for _, a := range asList(m["Action"]) {
					out[fmt.Sprint(a)] = true
				}
			}
		}
	}
	return out
}

// scheduleInput returns the Input of the AWS::Scheduler::Schedule whose
// target is the function id, from the transformed template.
func (s *createdStack) scheduleInput(t *testing.T, id string) []byte {
	t.Helper()
	for name, r := range s.tpl.Resources {
		if r.Type != "AWS::Scheduler::Schedule" {
			continue
		}
		target, _ := r.Properties["Target"].(map[string]any)
		if getAtt(t, target["Arn"], "Arn") == id {
			in, ok := target["Input"].(string)
			if !ok {
				t.Fatalf("%s: Target.Input %v is not a string", name, target["Input"])
			}
			return []byte(in)
		}
	}
	t.Fatalf("no schedule targets %s", id)
	return nil
}

// withContext bounds a step's AWS calls.
func withContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stringEnvironment works around a moto gap: its CloudFormation hands
// Lambda a Number parameter's value (REFRESH_WORKERS) as a JSON number,
// which Lambda's API never returns and the SDK refuses ("expected string").
// It turns each number of a GetFunctionConfiguration answer's
// Environment.Variables into the string CloudFormation would have passed.
type stringEnvironment struct{ next aws.HTTPClient }

func (c stringEnvironment) Do(req *http.Request) (*http.Response, error) {
	if c.next == nil {
		c.next = http.DefaultClient
	}
	resp, err := c.next.Do(req)
	if err != nil || !strings.HasSuffix(req.URL.Path, "/configuration") || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	var doc map[string]any
	if json.Unmarshal(body, &doc) == nil {
		if env, ok := doc["Environment"].(map[string]any); ok {
			if vars, ok := env["Variables"].(map[string]any); ok {
				for k, v := range vars {
					if n, isNumber := v.(float64); isNumber {
						vars[k] = strconv.FormatFloat(n, 'f', -1, 64)
					}
				}
				body, _ = json.Marshal(doc)
			}
		}
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	resp.ContentLength = int64(len(body))
	resp.Header.Del("Content-Length")
	return resp, nil
}
