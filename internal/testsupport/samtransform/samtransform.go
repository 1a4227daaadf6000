// Package samtransform runs the SAM transform itself on a template: the
// aws-sam-translator library, the code CloudFormation runs for
// `Transform: AWS::Serverless-2016-10-31`, after the functions' local
// CodeUris are replaced by S3 locations as `sam package` replaces them.
// What it returns is the template CloudFormation would create a stack
// from, in plain JSON (intrinsics in their long form).
//
// The translator is a Python library; transform.py beside this file calls
// it, run by the pinned python3 of package pytools (pytools.Python).
package samtransform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/oauthbroker/oauthbroker/internal/testsupport/modroot"
)

// Request says how to package and deploy the template.
type Request struct {
	// Parameters are the stack's parameter values; the template's
	// defaults give the others.
	Parameters map[string]string `json:"parameters,omitempty"`
	// Code maps a function's logical ID to the s3://bucket/key of its zip.
	Code map[string]string `json:"code,omitempty"`
	// Bucket, if set, holds the zip of every function Code does not name,
	// under the key <LogicalId>.zip.
	Bucket string `json:"bucket,omitempty"`
	// Region is the stack's region (AWS::Region); default us-east-1.
	Region string `json:"-"`
}

// Run returns the SAM transform of the template file at path (made
// absolute from the module root if relative) for req, as JSON; python is
// pytools.Python's. A template the translator refuses is an error holding
// the translator's messages.
func Run(ctx context.Context, python, path string, req Request) ([]byte, error) {
	root, err := modroot.Dir()
	if err != nil {
		return nil, err
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(root, path)
	}
	in, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	region := req.Region
	if region == "" {
		region = "us-east-1"
	}
	script := filepath.Join(root, "internal", "testsupport", "samtransform", "transform.py")
	cmd := exec.CommandContext(ctx, python, script, path)
	cmd.Stdin = bytes.NewReader(in)
	// The translator asks boto3 for the region (AWS::Region, ARN
	// partitions); it needs no credentials.
	cmd.Env = append(os.Environ(), "AWS_DEFAULT_REGION="+region, "AWS_REGION="+region)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("the SAM translator refuses %s: %v\n%s", filepath.Base(path), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
