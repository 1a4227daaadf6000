package rehearsal

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/pytools"
	"github.com/oauthbroker/oauthbroker/internal/testsupport/samtransform"
)

// deploy is what `sam deploy` with samconfig.toml's default environment
// hands CloudFormation: the parameter without a default, and the bucket
// `resolve_s3` creates for the zips `sam package` uploads.
var deploy = samtransform.Request{
	Parameters: map[string]string{"ReturnOrigins": "https://app.example.com"},
	Bucket:     "aws-sam-cli-managed-default-samclisourcebucket-1a2b3c4d5e6f",
}

var lintVersion struct {
	once sync.Once
	err  error
}

// cfnLint returns the cfn-lint command, after checking that it is the
// pinned version.
func cfnLint(t *testing.T) string {
	t.Helper()
	cmd := pytools.Command(t, "cfn-lint")
	lintVersion.once.Do(func() {
		out, err := exec.Command(cmd, "--version").CombinedOutput()
		got := strings.TrimSpace(string(out))
		if want := "cfn-lint " + pytools.Pin("cfn-lint"); err != nil || got != want {
			lintVersion.err = fmt.Errorf("%s --version = %q (%v), want %q", cmd, got, err, want)
		}
	})
	if lintVersion.err != nil {
		t.Fatalf("%v; run `make tools`", lintVersion.err)
	}
	return cmd
}

// lint runs cfn-lint once on the templates at paths (one run: most of
// its time is starting up) and returns each one's findings, errors and
// warnings, one line each (file:line:column:…:rule:message).
func lint(ctx context.Context, cfnlint string, paths ...string) (map[string][]string, error) {
	cmd := exec.CommandContext(ctx, cfnlint, append([]string{"--format", "parseable", "--"}, paths...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	findings := map[string][]string{}
	n := 0
	for _, line := range strings.Split(stdout.String(), "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		n++
		for _, p := range paths {
			if strings.HasPrefix(line, p+":") {
				findings[p] = append(findings[p], line)
			}
		}
	}
	// cfn-lint's exit code is a bit set of the levels it found (2 error,
	// 4 warning, 8 informational); anything else, or a code without a
	// finding, is cfn-lint failing.
	var exit *exec.ExitError
	if err != nil && (!errors.As(err, &exit) || exit.ExitCode() > 14 || n == 0) {
		return nil, fmt.Errorf("cfn-lint: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	return findings, nil
}

func templatePath(t *testing.T) string {
	t.Helper()
	root, err := modroot.Dir()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "template.yaml")
}

// seeded are defects seeded into template.yaml, one per case, to show that
// steps 1 and 2 can fail: each says what each step must report, a
// cfn-lint rule or (step 2) the translator's refusal.
var seeded = []struct {
	name, old, new string
	step1, step2   string
}{
	{
		name: "timeout above Lambda's 900 s",
		old:  "      Timeout: 300\n", new: "      Timeout: 3000\n",
		step1: ":E3034:", step2: ":E3034:",
	},
	{
		// YAML 1.1, which CloudFormation and SAM read, makes a plain OFF false.
		name: "unquoted OFF",
		old:  "Mode: 'OFF'", new: "Mode: OFF",
		step1: ":E3030:False is not one of", step2: ":E3030:False is not one of",
	},
	{
		name: "event type SAM does not know",
		old:  "Type: ScheduleV2", new: "Type: ScheduleV3",
		step1: ":E0001:", step2: "Event Type is: ScheduleV3",
	},
}

// rehearsed is one template through steps 1 and 2.
type rehearsed struct {
	name         string
	path         string // the template
	transformed  string // its transform, "" if the translator refused it
	transformErr error
	step1, step2 string // what each step must report; "" for nothing
}

// TestStaticRehearsal runs steps 1 and 2 on template.yaml, which must pass
// both, and on each seeded defect, which each step must report:
//
//  1. cfn-lint template.yaml: no error or warning;
//  2. the SAM translator transforms the packaged template into plain
//     CloudFormation, each function's code in the artifact bucket, and
//     cfn-lint finds no error or warning in that.
func TestStaticRehearsal(t *testing.T) {
	src, err := os.ReadFile(templatePath(t))
	if err != nil {
		t.Fatal(err)
	}
	python, cfnlint := pytools.Python(t), cfnLint(t)
	dir := t.TempDir()
	runs := []*rehearsed{{name: "template.yaml", path: templatePath(t)}}
	for i, c := range seeded {
		if n := bytes.Count(src, []byte(c.old)); n != 1 {
			t.Fatalf("seeded %q: template.yaml holds %q %d times, want once: update the case", c.name, c.old, n)
		}
		p := filepath.Join(dir, fmt.Sprintf("seeded%d.yaml", i))
		if err := os.WriteFile(p, bytes.Replace(src, []byte(c.old), []byte(c.new), 1), 0o644); err != nil {
			t.Fatal(err)
		}
		runs = append(runs, &rehearsed{name: "seeded " + c.name, path: p, step1: c.step1, step2: c.step2})
	}

	// The transforms, at once; then one cfn-lint run for every file.
	start := time.Now()
	var wg sync.WaitGroup
	for i, r := range runs {
		wg.Go(func() {
			out, err := samtransform.Run(t.Context(), python, r.path, deploy)
			if r.transformErr = err; err == nil {
				r.transformed = filepath.Join(dir, fmt.Sprintf("transformed%d.json", i))
				r.transformErr = os.WriteFile(r.transformed, out, 0o644)
			}
		})
	}
	wg.Wait()
	transformed := time.Since(start)
	var paths []string
	for _, r := range runs {
		paths = append(paths, r.path)
		if r.transformed != "" {
			paths = append(paths, r.transformed)
		}
	}
	findings, err := lint(t.Context(), cfnlint, paths...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("transforms %v, cfn-lint of %d files %v", transformed.Round(time.Millisecond), len(paths), (time.Since(start) - transformed).Round(time.Millisecond))

	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			t.Run("step 1 cfn-lint", func(t *testing.T) {
				expect(t, findings[r.path], r.step1)
			})
			t.Run("step 2 transform and cfn-lint", func(t *testing.T) {
				switch {
				case r.transformErr != nil && r.step2 != "" && strings.Contains(r.transformErr.Error(), r.step2):
					// refused, as it must be
				case r.transformErr != nil:
					t.Fatal(r.transformErr)
				default:
					if r.step2 == "" {
						checkTransformed(t, r.transformed)
					}
					expect(t, findings[r.transformed], r.step2)
				}
			})
		})
	}
}

// expect checks that findings are none when want is "", else that one
// holds want.
func expect(t *testing.T, findings []string, want string) {
	t.Helper()
	if want == "" {
		for _, f := range findings {
			t.Errorf("cfn-lint: %s", f)
		}
		return
	}
	for _, f := range findings {
		if strings.Contains(f, want) {
			return
		}
	}
	t.Errorf("want a finding with %q, got %q", want, findings)
}

// checkTransformed checks that the transformed template at path is plain
// CloudFormation with the four functions' code where `sam package` put it.
func checkTransformed(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tpl struct {
		Transform any
		Resources map[string]struct {
			Type       string
			Properties struct {
				Code *struct{ S3Bucket, S3Key any }
			}
		}
	}
	if err := json.Unmarshal(b, &tpl); err != nil {
		t.Fatalf("the transformed template is not JSON: %v", err)
	}
	if tpl.Transform != nil {
		t.Errorf("the transformed template still has Transform %v", tpl.Transform)
	}
	functions := 0
	for name, r := range tpl.Resources {
		switch {
		case strings.HasPrefix(r.Type, "AWS::Serverless::"):
			t.Errorf("%s is still %s after the transform", name, r.Type)
		case r.Type == "AWS::Lambda::Function":
			functions++
			if c := r.Properties.Code; c == nil || c.S3Bucket != deploy.Bucket || c.S3Key != name+".zip" {
				t.Errorf("%s: Code = %+v, want s3://%s/%s.zip, where `sam package` put it", name, c, deploy.Bucket, name)
			}
		}
	}
	if functions != 4 {
		t.Errorf("the transformed template has %d AWS::Lambda::Function resources, want 4", functions)
	}
	t.Logf("the transformed template has %d resources", len(tpl.Resources))
}
