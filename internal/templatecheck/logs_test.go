package templatecheck

import (
	"fmt"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// logGroupOf returns the logical ID of the AWS::Logs::LogGroup function fn
// logs to (LoggingConfig.LogGroup: !Ref <group>).
func (tpl *cfnTemplate) logGroupOf(fn string) (string, error) {
	v := path(tpl.functionProps(fn), "LoggingConfig", "LogGroup")
	name, ok := refName(v)
	if !ok || tpl.Resources[name].Type != "AWS::Logs::LogGroup" {
		return "", fmt.Errorf("%s: LoggingConfig.LogGroup = %s, want !Ref <an AWS::Logs::LogGroup of this template> (without one, Lambda creates /aws/lambda/<function>, which never expires)", fn, describe(v))
	}
	return name, nil
}

// TestLogGroups: each function logs, in JSON, to a log group of its own
// that the stack creates with the retention of the LogRetentionDays
// parameter, and that outlives the stack, as the groups Lambda creates by
// itself do. Its role may write there and nowhere else (TestPolicies,
// TestIAMLeastPrivilege).
func TestLogGroups(t *testing.T) {
	tpl := loadTemplate(t)

	p, ok := tpl.Parameters["LogRetentionDays"]
	if !ok {
		t.Fatal("parameter LogRetentionDays is missing")
	}
	if p["Type"] != "Number" {
		t.Errorf("parameter LogRetentionDays: Type = %s, want Number", describe(p["Type"]))
	}
	// cfn-lint checks that each of its AllowedValues is a period
	// CloudWatch Logs accepts.
	if n, ok := asInt(p["Default"]); !ok || n != 90 {
		t.Errorf("parameter LogRetentionDays: Default = %s, want 90", describe(p["Default"]))
	}

	owner := map[string]string{}
	for _, f := range wantFunctions {
		g, err := tpl.logGroupOf(f.name)
		if err != nil {
			t.Error(err)
			continue
		}
		if prev, shared := owner[g]; shared {
			t.Errorf("%s: log group %s is also %s's: each function has its own", f.name, g, prev)
		}
		owner[g] = f.name
		if v := path(tpl.functionProps(f.name), "LoggingConfig", "LogFormat"); v != "JSON" {
			t.Errorf("%s: LoggingConfig.LogFormat = %s, want JSON", f.name, describe(v))
		}
		r := tpl.Resources[g]
		if v := r.Properties["RetentionInDays"]; !reflect.DeepEqual(v, obj{"Ref": "LogRetentionDays"}) {
			t.Errorf("%s: RetentionInDays = %s, want !Ref LogRetentionDays", g, describe(v))
		}
		if r.DeletionPolicy != "Retain" || r.UpdateReplacePolicy != "Retain" {
			t.Errorf("%s: DeletionPolicy/UpdateReplacePolicy = %v/%v, want Retain/Retain: a deleted or replaced stack's logs stay for their retention", g, r.DeletionPolicy, r.UpdateReplacePolicy)
		}
		if v, ok := r.Properties["LogGroupName"]; ok {
			t.Errorf("%s: LogGroupName = %s: let CloudFormation name it, so that a stack re-created under the same name does not meet its retained group", g, describe(v))
		}
	}
	if got, want := tpl.ofType("AWS::Logs::LogGroup"), slices.Sorted(maps.Keys(owner)); !slices.Equal(got, want) {
		t.Errorf("AWS::Logs::LogGroup resources = %v, want one per function %v", got, want)
	}
}
