package templatecheck

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// basicExecutionRole is the AWS managed policy SAM attaches to the role it
// generates for a function that has no Role. It allows
// logs:CreateLogGroup, logs:CreateLogStream and logs:PutLogEvents on "*":
// every log group and stream of the account.
const basicExecutionRole = "arn:${AWS::Partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"

// lambdaTrust is the trust policy of a Lambda execution role, as SAM
// writes it for the roles it generates: the Lambda service may assume the
// role, nobody else.
var lambdaTrust = obj{
	"Version": "2012-10-17",
	"Statement": []any{obj{
		"Effect":    "Allow",
		"Principal": obj{"Service": []any{"lambda.amazonaws.com"}},
		"Action":    []any{"sts:AssumeRole"},
	}},
}

// execRole is the IAM role a function runs with once SAM has transformed
// the template.
type execRole struct {
	// name is the role's logical ID: the function's Role, or
	// <Function>Role, which SAM generates when the function has none.
	name string
	// generated is true when SAM generates the role from the function's
	// Policies.
	generated bool
	// trust is the role's AssumeRolePolicyDocument.
	trust any
	// managed lists its ManagedPolicyArns (names or ARNs): policies whose
	// statements are not in this template.
	managed []any
	// docs are the policy documents the template writes for the role: its
	// inline policies and the IAM policy resources attached to it.
	docs []obj
	// sources are the template resources docs come from.
	sources []string
	// problems are what SAM would do differently from what the template
	// seems to say.
	problems []string
}

// executionRole evaluates the role function fn runs with, as the SAM
// transform (AWS::Serverless::Function, property Role) produces it: with no
// Role, SAM generates <Function>Role with the trust policy lambdaTrust, the
// managed policy basicExecutionRole, the function's Policies as inline
// policies and its managed policy names as ManagedPolicyArns; with a Role,
// SAM generates nothing and ignores Policies.
func (tpl *cfnTemplate) executionRole(fn string) (execRole, error) {
	props := tpl.functionProps(fn)
	if props["Role"] == nil {
		return generatedRole(fn, props["Policies"])
	}
	name, attr, ok := getAtt(props["Role"])
	if !ok || attr != "Arn" || tpl.Resources[name].Type != "AWS::IAM::Role" {
		return execRole{}, fmt.Errorf("%s: Role = %s, want !GetAtt <an AWS::IAM::Role of this template>.Arn", fn, describe(props["Role"]))
	}
	p := tpl.Resources[name].Properties
	r := execRole{name: name, trust: p["AssumeRolePolicyDocument"], managed: anyList(p["ManagedPolicyArns"]), sources: []string{name}}
	if props["Policies"] != nil {
		r.problems = append(r.problems, fmt.Sprintf("%s has Policies and a Role: SAM ignores the Policies; write them in %s", fn, name))
	}
	for i, pol := range anyList(p["Policies"]) {
		doc, ok := path(pol, "PolicyDocument").(obj)
		if !ok {
			return execRole{}, fmt.Errorf("%s policy %d: PolicyDocument = %s, want a mapping", name, i, describe(path(pol, "PolicyDocument")))
		}
		r.docs = append(r.docs, doc)
	}
	isRole := func(v any) bool { ref, ok := refName(v); return ok && ref == name }
	for _, other := range slices.Sorted(maps.Keys(tpl.Resources)) {
		res := tpl.Resources[other]
		var attached bool
		switch res.Type {
		case "AWS::IAM::Policy", "AWS::IAM::ManagedPolicy":
			attached = slices.ContainsFunc(anyList(res.Properties["Roles"]), isRole)
		case "AWS::IAM::RolePolicy":
			attached = isRole(res.Properties["RoleName"])
		}
		if !attached {
			continue
		}
		doc, ok := path(res.Properties, "PolicyDocument").(obj)
		if !ok {
			return execRole{}, fmt.Errorf("%s: PolicyDocument = %s, want a mapping", other, describe(path(res.Properties, "PolicyDocument")))
		}
		r.docs = append(r.docs, doc)
		r.sources = append(r.sources, other)
	}
	return r, nil
}

// generatedRole is the role SAM generates for function fn with the given
// Policies property.
func generatedRole(fn string, policies any) (execRole, error) {
	r := execRole{name: fn + "Role", generated: true, trust: lambdaTrust, managed: []any{basicExecutionRole}}
	if doc, ok := policies.(obj); ok && doc["Statement"] != nil {
		r.docs = append(r.docs, doc)
		return r, nil
	}
	for _, p := range anyList(policies) {
		switch x := p.(type) {
		case string:
			r.managed = append(r.managed, x)
		case obj:
			if x["Statement"] == nil {
				return execRole{}, fmt.Errorf("%s: policy %s is a SAM policy template or unknown form; write explicit statements (templates like DynamoDBCrudPolicy grant Scan and more)", fn, describe(x))
			}
			r.docs = append(r.docs, x)
		default:
			return execRole{}, fmt.Errorf("%s: unsupported Policies entry %s", fn, describe(p))
		}
	}
	return r, nil
}

// statements returns the policy statements of the role function fn runs
// with, failing on forms that cannot be checked.
func (tpl *cfnTemplate) statements(t *testing.T, fn string) []obj {
	t.Helper()
	r, err := tpl.executionRole(fn)
	if err != nil {
		t.Fatal(err)
	}
	var out []obj
	for _, doc := range r.docs {
		for _, s := range anyList(doc["Statement"]) {
			st, ok := s.(obj)
			if !ok {
				t.Errorf("%s: policy statement %s is not a mapping", r.name, describe(s))
				continue
			}
			out = append(out, st)
		}
	}
	return out
}

// checkLambdaTrust checks that a trust policy lets the Lambda service, and
// only it, assume the role.
func checkLambdaTrust(doc any) error {
	sts := anyList(path(doc, "Statement"))
	if len(sts) != 1 {
		return fmt.Errorf("%d statements, want one", len(sts))
	}
	st, _ := sts[0].(obj)
	for k := range st {
		if k != "Effect" && k != "Principal" && k != "Action" && k != "Sid" {
			return fmt.Errorf("the statement has %s", k)
		}
	}
	actions, _ := stringList(st["Action"])
	principal, _ := path(st, "Principal").(obj)
	services, _ := stringList(principal["Service"])
	if st["Effect"] != "Allow" || !slices.Equal(actions, []string{"sts:AssumeRole"}) ||
		len(principal) != 1 || !slices.Equal(services, []string{"lambda.amazonaws.com"}) {
		return errors.New("want Allow sts:AssumeRole to the service principal lambda.amazonaws.com only")
	}
	return nil
}

// TestExecutionRoles: each function runs with a role of its own, written
// out in this template, that only Lambda may assume, with no managed
// policy and no statement on every resource ("*"). The role SAM generates
// for a function without a Role always carries AWSLambdaBasicExecutionRole,
// whose CloudWatch Logs actions are on "*"; each role here writes to its
// function's own log group instead (TestLogGroups, TestPolicies).
func TestExecutionRoles(t *testing.T) {
	tpl := loadTemplate(t)
	if err := checkLambdaTrust(lambdaTrust); err != nil {
		t.Fatalf("lambdaTrust: %v", err)
	}
	owner := map[string]string{}
	for _, f := range wantFunctions {
		t.Run(f.name, func(t *testing.T) {
			r, err := tpl.executionRole(f.name)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range r.problems {
				t.Error(p)
			}
			role := r.name
			if r.generated {
				role += " (generated by SAM: the function has no Role)"
			}
			if prev, shared := owner[r.name]; shared {
				t.Errorf("%s is also %s's role: each function has its own", role, prev)
			}
			owner[r.name] = f.name
			for _, m := range r.managed {
				t.Errorf("%s has the managed policy %s: its statements are not in this template (AWSLambdaBasicExecutionRole allows CloudWatch Logs actions on \"*\")", role, canonical(m))
			}
			if err := checkLambdaTrust(r.trust); err != nil {
				t.Errorf("%s: AssumeRolePolicyDocument = %s: %v", role, describe(r.trust), err)
			}
			for _, st := range tpl.statements(t, f.name) {
				for _, res := range anyList(st["Resource"]) {
					v, err := tpl.resolve(res)
					if err == nil && strings.TrimSpace(v) == "*" {
						t.Errorf("%s: statement %v has Resource \"*\"", role, st["Sid"])
					}
				}
			}
		})
	}
}
