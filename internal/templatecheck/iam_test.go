package templatecheck

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/oauthbroker/oauthbroker/shared/setup"
)

// grantsOf returns the Allow grants of a function's policies. A resource
// that is the function's own log group is written ownLogGroup.
func (tpl *cfnTemplate) grantsOf(t *testing.T, fn string) []grant {
	t.Helper()
	own := ownLogGroup
	if g, err := tpl.logGroupOf(fn); err == nil {
		own = "GetAtt:" + g + ".Arn"
	}
	var got []grant
	for _, st := range tpl.statements(t, fn) {
		if st["Effect"] != "Allow" {
			continue
		}
		actions, _ := stringList(st["Action"])
		for _, a := range actions {
			for _, r := range anyList(st["Resource"]) {
				res := canonical(r)
				if res == own {
					res = ownLogGroup
				}
				got = append(got, grant{a, res, conditionString(st["Condition"])})
			}
		}
	}
	return got
}

// capabilities are the rows of the IAM matrix in docs/security.md: what a
// function may do, in words, and the grant that allows it.
var capabilities = []struct {
	what  string
	grant grant
}{
	{"write pending states (`state#*`)", grant{"dynamodb:PutItem", tableRes, stateKeys}},
	{"consume pending states (`state#*`)", grant{"dynamodb:DeleteItem", tableRes, stateKeys}},
	{"record a connect link's first use (`link#*`)", grant{"dynamodb:PutItem", tableRes, linkKeys}},
	{"read connections (`conn#*`)", grant{"dynamodb:GetItem", tableRes, connKeys}},
	{"write connections (`conn#*`)", grant{"dynamodb:PutItem", tableRes, connKeys}},
	{"lease connections (`conn#*`)", grant{"dynamodb:UpdateItem", tableRes, connKeys}},
	{"delete connections (`conn#*`)", grant{"dynamodb:DeleteItem", tableRes, connKeys}},
	{"query the due index", grant{"dynamodb:Query", dueIndex, noCond}},
	{"seal states: `kms:GenerateDataKey` on TokenKey, context record `state`", grant{"kms:GenerateDataKey", tokenKey, stateCtx}},
	{"seal connections: `kms:GenerateDataKey` on TokenKey, context record `connection`", grant{"kms:GenerateDataKey", tokenKey, connCtx}},
	{"open states (PKCE verifiers): `kms:Decrypt` on TokenKey, context record `state`", grant{"kms:Decrypt", tokenKey, stateCtx}},
	{"open connections (tokens): `kms:Decrypt` on TokenKey, context record `connection` (or none, sealed before)", grant{"kms:Decrypt", tokenKey, connOpenCtx}},
	{"read the signing keys secret", grant{"secretsmanager:GetSecretValue", keysRes, noCond}},
	{"read client credentials (`<prefix>provider/*`)", grant{"secretsmanager:GetSecretValue", providers, noCond}},
	{"publish lifecycle events (`events:PutEvents` on the one bus)", grant{"events:PutEvents", eventBus, noCond}},
	{"create log streams in its own log group", grant{"logs:CreateLogStream", ownLogGroup, noCond}},
	{"write log events to its own log group", grant{"logs:PutLogEvents", ownLogGroup, noCond}},
}

// TestIAMLeastPrivilege states, one property at a time, why each
// function's policy is least privilege (TestPolicies pins the exact
// grants), and checks that docs/security.md prints the matrix as the
// template has it.
func TestIAMLeastPrivilege(t *testing.T) {
	tpl := loadTemplate(t)
	grants := map[string][]grant{}
	for _, f := range wantFunctions {
		grants[f.name] = tpl.grantsOf(t, f.name)
	}
	has := func(fn string, g grant) bool { return slices.Contains(grants[fn], g) }
	any := func(fn string, pred func(grant) bool) bool { return slices.ContainsFunc(grants[fn], pred) }
	isAction := func(a string) func(grant) bool { return func(g grant) bool { return g.Action == a } }

	for _, tt := range []struct {
		name string
		ok   bool
	}{
		{"authorize cannot write, read or lease connections (tokens)", !any("AuthorizeFunction", func(g grant) bool {
			return g.Condition == connKeys || g.Condition == noCond && strings.HasPrefix(g.Action, "dynamodb:")
		})},
		{"authorize cannot open sealed credentials (no kms:Decrypt)", !any("AuthorizeFunction", isAction("kms:Decrypt"))},
		{"callback cannot query the due index", !any("CallbackFunction", isAction("dynamodb:Query"))},
		{"callback cannot open a connection's tokens (kms:Decrypt for states only)", !any("CallbackFunction", func(g grant) bool {
			return g.Action == "kms:Decrypt" && g.Condition != stateCtx
		})},
		{"refresh and token cannot open states (kms:Decrypt for connections only)", !slices.ContainsFunc(append(slices.Clone(grants["RefreshFunction"]), grants["TokenFunction"]...), func(g grant) bool {
			return g.Action == "kms:Decrypt" && g.Condition != connOpenCtx
		})},
		{"callback cannot lease (UpdateItem) connections", !any("CallbackFunction", isAction("dynamodb:UpdateItem"))},
		{"refresh cannot touch pending states", !any("RefreshFunction", func(g grant) bool { return g.Condition == stateKeys })},
		{"refresh cannot read the signing keys (it signs and verifies nothing)", !has("RefreshFunction", grant{"secretsmanager:GetSecretValue", keysRes, noCond})},
		{"only the token function (the app's DELETE) can delete a connection", !slices.ContainsFunc(append(append(grants["AuthorizeFunction"], grants["CallbackFunction"]...), grants["RefreshFunction"]...), func(g grant) bool {
			return g.Action == "dynamodb:DeleteItem" && g.Condition != stateKeys
		})},
		{"the token function cannot touch pending states, read the signing keys or query the due index", !any("TokenFunction", func(g grant) bool {
			return g.Condition == stateKeys || g.Resource == keysRes || g.Action == "dynamodb:Query"
		})},
		{"authorize cannot publish events (it changes no connection)", !any("AuthorizeFunction", isAction("events:PutEvents"))},
		{"events go to the configured bus only", func() bool {
			for _, gs := range grants {
				for _, g := range gs {
					if strings.HasPrefix(g.Action, "events:") && g.Resource != eventBus {
						return false
					}
				}
			}
			return true
		}()},
		{"every KMS grant names only TokenKey and requires this table's encryption context", func() bool {
			for _, gs := range grants {
				for _, g := range gs {
					if strings.HasPrefix(g.Action, "kms:") && (g.Resource != tokenKey || !strings.Contains(g.Condition, tableCtx)) {
						return false
					}
				}
			}
			return true
		}()},
		{"each function writes its own log group only, and creates no log group", func() bool {
			for _, gs := range grants {
				for _, g := range gs {
					if strings.HasPrefix(g.Action, "logs:") && (g.Resource != ownLogGroup || g.Action == "logs:CreateLogGroup") {
						return false
					}
				}
			}
			return true
		}()},
		{"no function can read secrets outside <prefix>keys and <prefix>provider/*", func() bool {
			for _, gs := range grants {
				for _, g := range gs {
					if strings.HasPrefix(g.Action, "secretsmanager:") && g.Resource != keysRes && g.Resource != providers {
						return false
					}
				}
			}
			return true
		}()},
	} {
		if !tt.ok {
			t.Errorf("not least privilege: %s", tt.name)
		}
	}

	// Every grant of every function is a row of the matrix: a new grant
	// must be named (and documented) before it is accepted.
	for fn, gs := range grants {
		for _, g := range gs {
			if !slices.ContainsFunc(capabilities, func(c struct {
				what  string
				grant grant
			}) bool {
				return c.grant == g
			}) {
				t.Errorf("%s: grant %s is not a row of the IAM matrix", fn, g)
			}
		}
	}

	matrix := iamMatrix(grants)
	doc, err := os.ReadFile(filepath.Join(repoRoot(t), "docs", "security.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), matrix) {
		t.Errorf("docs/security.md does not print the IAM matrix as template.yaml has it; it should contain:\n%s", matrix)
	}
}

// iamMatrix renders the capabilities × functions table of docs/security.md.
func iamMatrix(grants map[string][]grant) string {
	var b strings.Builder
	b.WriteString("| may … | authorize | callback | refresh | token |\n| --- | :-: | :-: | :-: | :-: |\n")
	for _, c := range capabilities {
		fmt.Fprintf(&b, "| %s |", c.what)
		for _, fn := range []string{"AuthorizeFunction", "CallbackFunction", "RefreshFunction", "TokenFunction"} {
			mark := " — |"
			if slices.Contains(grants[fn], c.grant) {
				mark = " ✔ |"
			}
			b.WriteString(mark)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// TestTokenKey: the KMS key that wraps the data keys sealing stored tokens
// (S20) rotates, outlives the stack like the table it protects, and is used
// through IAM grants only.
func TestTokenKey(t *testing.T) {
	tpl := loadTemplate(t)
	if got := tpl.ofType("AWS::KMS::Key"); !slices.Equal(got, []string{"TokenKey"}) {
		t.Fatalf("AWS::KMS::Key resources = %v, want [TokenKey]", got)
	}
	r := tpl.Resources["TokenKey"]
	if r.DeletionPolicy != "Retain" || r.UpdateReplacePolicy != "Retain" {
		t.Errorf("TokenKey DeletionPolicy/UpdateReplacePolicy = %v/%v, want Retain/Retain: the retained table is unreadable without it", r.DeletionPolicy, r.UpdateReplacePolicy)
	}
	p := r.Properties
	for k, want := range map[string]any{"EnableKeyRotation": true, "KeySpec": "SYMMETRIC_DEFAULT", "KeyUsage": "ENCRYPT_DECRYPT"} {
		if p[k] != want {
			t.Errorf("TokenKey %s = %s, want %v", k, describe(p[k]), want)
		}
	}
	sts := anyList(path(p, "KeyPolicy", "Statement"))
	if len(sts) != 1 {
		t.Fatalf("TokenKey policy has %d statements, want 1 (the account, through IAM)", len(sts))
	}
	root, _, _ := subOf(path(sts[0], "Principal", "AWS"))
	if path(sts[0], "Effect") != "Allow" || root != "arn:${AWS::Partition}:iam::${AWS::AccountId}:root" {
		t.Errorf("TokenKey policy statement = %s, want the account root principal only (grants to roles go through IAM policies)", describe(sts[0]))
	}
	if got := tpl.ofType("AWS::KMS::Alias"); len(got) != 1 || !reflect.DeepEqual(tpl.Resources[got[0]].Properties["TargetKeyId"], obj{"Ref": "TokenKey"}) {
		t.Errorf("want one AWS::KMS::Alias targeting TokenKey, got %v", got)
	}
}

// TestKMSConditionMatchesCode: the encryption context the functions send
// (shared/setup) is exactly what the template's KMS grants require, so a
// renamed key cannot pass every local test (local-kms has no IAM) and then
// meet AccessDenied in AWS.
func TestKMSConditionMatchesCode(t *testing.T) {
	for _, tc := range []struct {
		record, cond string
	}{{setup.RecordState, stateCtx}, {setup.RecordConnection, connCtx}} {
		ctx := setup.EncryptionContext("the-table", tc.record)
		want := map[string]string{"oauthbroker:table": "the-table", "oauthbroker:record": tc.record}
		if !maps.Equal(ctx, want) {
			t.Fatalf("setup.EncryptionContext = %v, want %v", ctx, want)
		}
		if got := `StringEquals kms:EncryptionContext:oauthbroker:record=[` + tc.record + `]; StringEquals kms:EncryptionContext:oauthbroker:table=[{"Ref":"ConnectionsTable"}]`; tc.cond != got {
			t.Errorf("the template's KMS condition for %s is %s, the code sends %v (want %s)", tc.record, tc.cond, ctx, got)
		}
	}
	if legacy := setup.LegacyEncryptionContext("the-table"); !maps.Equal(legacy, map[string]string{"oauthbroker:table": "the-table"}) {
		t.Errorf("setup.LegacyEncryptionContext = %v", legacy)
	}
}
