// Package templatecheck holds tests, and nothing else, for the deployment
// files at the repository root: template.yaml (the AWS SAM template),
// samconfig.toml, the sample events in events/ and the Makefile targets
// `sam build` runs.
//
// What any CloudFormation template must be (valid YAML as CloudFormation
// reads it, known resource types and properties, references that resolve,
// used parameters) is checked by the real tools in internal/rehearsal:
// cfn-lint and the SAM translator. The tests here check what only this
// product knows, on the template as CloudFormation deploys it, after the
// SAM transform (package samtransform): the routes and the functions they
// reach, IAM authorization on the token routes, each role's exact grants
// and their conditions (the least-privilege matrix of docs/security.md),
// the schedule's input, the outputs the README documents; and that
// `sam build` builds, byte for byte, the bootstraps `make build` and the
// tests build.
package templatecheck
