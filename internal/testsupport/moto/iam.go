package moto

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// testUser is the IAM user whose access key NewAccount hands out.
const testUser = "oauthbroker-test"

// EnforceIAM switches moto's IAM enforcement on for every later request to
// s, which StartEnforcing must have started: each request must then be
// signed with a key moto knows (an IAM user's, or an assumed role's) and
// its action allowed by the caller's policies. Call AllowAll on the
// accounts whose own keys the test keeps using first.
//
// How far moto evaluates a policy (moto 5.2.1, moto/iam/access_control.py):
// the Action and the Effect, explicit denies included. The resource of a
// request is "*" for every service but SQS, IAM and STS, so a statement
// naming a resource ARN never matches one (RoleGrantsAnyResource works
// around that); conditions of identity policies are not evaluated (no
// request context is passed), so they always hold; a role's trust policy
// with a Service principal cannot be evaluated (assume roles before).
func (s *Server) EnforceIAM(t testing.TB) {
	t.Helper()
	resp, err := http.Post(s.Endpoint+"/moto-api/reset-auth", "text/plain", strings.NewReader("0"))
	if err != nil {
		t.Fatalf("moto: switch IAM enforcement on: %v", err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusOK {
		t.Fatalf("moto: switch IAM enforcement on: %s %s", resp.Status, b)
	}
}

// AllowAll gives the account's test user every action on every resource,
// so that the test's own requests pass once EnforceIAM is on.
func (a *Account) AllowAll(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	doc := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`
	if _, err := iam.NewFromConfig(a.Config()).PutUserPolicy(ctx, &iam.PutUserPolicyInput{
		UserName: aws.String(testUser), PolicyName: aws.String("allow-all"), PolicyDocument: &doc,
	}); err != nil {
		t.Fatalf("moto: allow all to %s in %s: %v", testUser, a.ID, err)
	}
}

// AssumeRole returns temporary credentials of the role roleARN in the
// account, as Lambda gets for a function's execution role.
func (a *Account) AssumeRole(t testing.TB, roleARN, session string) aws.Credentials {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	out, err := sts.NewFromConfig(a.Config()).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: &roleARN, RoleSessionName: &session})
	if err != nil {
		t.Fatalf("moto: assume role %s: %v", roleARN, err)
	}
	c := out.Credentials
	return aws.Credentials{
		AccessKeyID:     aws.ToString(c.AccessKeyId),
		SecretAccessKey: aws.ToString(c.SecretAccessKey),
		SessionToken:    aws.ToString(c.SessionToken),
	}
}

// RoleGrantsAnyResource rewrites every inline policy of the role name so
// that each statement's Resource is "*" (Action, Effect and Condition
// unchanged), and returns the policies as they were. Moto matches a
// statement's Resource against "*" for the services the functions call (see
// EnforceIAM), so without this a role allowed an action on one table is
// refused it everywhere; with it, moto checks the role's actions, which is
// what it can evaluate.
func (a *Account) RoleGrantsAnyResource(t testing.TB, name string) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	client := iam.NewFromConfig(a.Config())
	list, err := client.ListRolePolicies(ctx, &iam.ListRolePoliciesInput{RoleName: &name})
	if err != nil {
		t.Fatalf("moto: list policies of role %s: %v", name, err)
	}
	out := map[string]string{}
	for _, p := range list.PolicyNames {
		got, err := client.GetRolePolicy(ctx, &iam.GetRolePolicyInput{RoleName: &name, PolicyName: &p})
		if err != nil {
			t.Fatalf("moto: get policy %s of role %s: %v", p, name, err)
		}
		doc, err := decodePolicy(aws.ToString(got.PolicyDocument))
		if err != nil {
			t.Fatalf("moto: policy %s of role %s: %v", p, name, err)
		}
		out[p] = doc
		anyResource, err := withResource(doc, "*")
		if err != nil {
			t.Fatalf("moto: policy %s of role %s: %v", p, name, err)
		}
		if _, err := client.PutRolePolicy(ctx, &iam.PutRolePolicyInput{RoleName: &name, PolicyName: &p, PolicyDocument: &anyResource}); err != nil {
			t.Fatalf("moto: put policy %s of role %s: %v", p, name, err)
		}
	}
	if len(out) == 0 {
		t.Fatalf("moto: role %s has no inline policy", name)
	}
	return out
}

// decodePolicy returns a policy document as IAM's GetRolePolicy returns
// it (URL-encoded on AWS; plain JSON from moto), as JSON. A role moto's
// CloudFormation created holds its inline policies as Python's repr of the
// parsed document ({'Effect': 'Allow', …}): that is turned into JSON too.
func decodePolicy(doc string) (string, error) {
	doc = strings.TrimSpace(doc)
	if !strings.HasPrefix(doc, "{") {
		plain, err := url.QueryUnescape(doc)
		if err != nil {
			return "", fmt.Errorf("policy document neither JSON nor URL-encoded JSON: %w", err)
		}
		doc = plain
	}
	if json.Valid([]byte(doc)) {
		return doc, nil
	}
	plain, err := pythonLiteralToJSON(doc)
	if err != nil || !json.Valid([]byte(plain)) {
		return "", fmt.Errorf("policy document is neither JSON nor a Python literal of one (%v): %.80s", err, doc)
	}
	return plain, nil
}

// pythonLiteralToJSON converts the repr of a Python dict of lists, strings,
// numbers and booleans into JSON.
func pythonLiteralToJSON(s string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			j := i + 1
			var str strings.Builder
			for ; j < len(s) && s[j] != c; j++ {
				if s[j] == '\\' && j+1 < len(s) {
					j++
				}
				str.WriteByte(s[j])
			}
			if j == len(s) {
				return "", fmt.Errorf("unterminated string at %d", i)
			}
			q, _ := json.Marshal(str.String())
			b.Write(q)
			i = j
		case strings.HasPrefix(s[i:], "True"):
			b.WriteString("true")
			i += 3
		case strings.HasPrefix(s[i:], "False"):
			b.WriteString("false")
			i += 4
		case strings.HasPrefix(s[i:], "None"):
			b.WriteString("null")
			i += 3
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

// withResource returns the policy document doc with every statement's
// Resource (or NotResource) replaced by resource.
func withResource(doc, resource string) (string, error) {
	var p map[string]any
	if err := json.Unmarshal([]byte(doc), &p); err != nil {
		return "", err
	}
	statements, ok := p["Statement"].([]any)
	if !ok {
		statements = []any{p["Statement"]}
	}
	for _, st := range statements {
		m, ok := st.(map[string]any)
		if !ok {
			return "", fmt.Errorf("statement %v is not an object", st)
		}
		delete(m, "NotResource")
		m["Resource"] = resource
	}
	p["Statement"] = statements
	b, err := json.Marshal(p)
	return string(b), err
}
