// Package templatecheck holds tests, and nothing else, for the deployment
// files at the repository root: template.yaml (the AWS SAM template),
// samconfig.toml and the sample events in events/.
//
// SAM CLI and Docker are not needed: the tests parse the template with
// gopkg.in/yaml.v3 (CloudFormation short tags such as !Ref and !Sub are
// turned into their long JSON forms), check its structure and the IAM
// roles the functions run with (evaluated as the SAM transform makes them),
// cross-check the sample events with the routes and the schedule, and build
// every function's CodeUri for linux/arm64 as `sam build` would. Run with
// -short to skip the builds.
package templatecheck
