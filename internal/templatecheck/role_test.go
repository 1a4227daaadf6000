package templatecheck

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"
)

// execRole is the IAM role a function runs with, in the transformed
// template.
type execRole struct {
	// name is the role's logical ID.
	name string
	// trust is the role's AssumeRolePolicyDocument.
	trust any
	// managed lists its ManagedPolicyArns: policies whose statements are
	// not in this template.
	managed []any
	// docs are the policy documents the stack gives the role: its inline
	// policies and the IAM policy resources attached to it.
	docs []obj
}

// executionRole returns the role function fn runs with: the role its Role
// names. Had fn no Role, SAM would have generated one, <Function>Role,
// with the managed policy AWSLambdaBasicExecutionRole, which
// TestExecutionRoles refuses.
func (tpl *cfnTemplate) executionRole(fn string) (execRole, error) {
	name, attr, ok := getAtt(tpl.functionProps(fn)["Role"])
	if !ok || attr != "Arn" || tpl.Resources[name].Type != "AWS::IAM::Role" {
		return execRole{}, fmt.Errorf("%s: Role = %s, want !GetAtt <an AWS::IAM::Role of this template>.Arn", fn, describe(tpl.functionProps(fn)["Role"]))
	}
	p := tpl.Resources[name].Properties
	r := execRole{name: name, trust: p["AssumeRolePolicyDocument"], managed: anyList(p["ManagedPolicyArns"])}
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

// checkTrust checks that a trust policy lets the AWS service (such as
// lambda.amazonaws.com), and only it, assume the role.
func checkTrust(doc any, service string) error {
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
		len(principal) != 1 || !slices.Equal(services, []string{service}) {
		return errors.New("want Allow sts:AssumeRole to the service principal " + service + " only")
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
	written := loadSAMFunctions(t)
	owner := map[string]string{}
	for _, f := range wantFunctions {
		t.Run(f.name, func(t *testing.T) {
			if written[f.name].Properties.Policies.Kind != 0 {
				t.Errorf("%s has Policies and a Role: SAM drops the Policies; write them in its role", f.name)
			}
			r, err := tpl.executionRole(f.name)
			if err != nil {
				t.Fatal(err)
			}
			if prev, shared := owner[r.name]; shared {
				t.Errorf("%s is also %s's role: each function has its own", r.name, prev)
			}
			owner[r.name] = f.name
			for _, m := range r.managed {
				t.Errorf("%s has the managed policy %s: its statements are not in this template (AWSLambdaBasicExecutionRole, which SAM attaches to the role it generates, allows CloudWatch Logs actions on \"*\")", r.name, canonical(m))
			}
			if err := checkTrust(r.trust, "lambda.amazonaws.com"); err != nil {
				t.Errorf("%s: AssumeRolePolicyDocument = %s: %v", r.name, describe(r.trust), err)
			}
			for _, st := range tpl.statements(t, f.name) {
				for _, res := range anyList(st["Resource"]) {
					if res == "*" {
						t.Errorf("%s: statement %v has Resource \"*\"", r.name, st["Sid"])
					}
				}
			}
		})
	}
}
