// Package rehearsal holds tests, and nothing else, that rehearse
// `sam deploy` of template.yaml with the real tools that deployment runs,
// in the order it runs them:
//
//  1. cfn-lint on template.yaml: no error or warning;
//  2. the SAM transform (package samtransform: the translator library,
//     after the functions' CodeUris are replaced by S3 locations as
//     `sam package` does), and cfn-lint on its output: no error or
//     warning;
//  3. the transformed template creates a stack on moto's CloudFormation
//     (TestLiveRehearsal), the functions' zips in moto's S3;
//  4. each function's configuration is read back from the stack and its
//     bootstrap runs under the Lambda emulator with exactly that
//     environment, on the stack's resources, through the whole flow;
//  5. each function runs with its own role's credentials under moto's IAM
//     enforcement, and the actions it calls are compared with its grants.
//
// docs/rehearsal.md says what each step proves and where moto falls
// short. A template that no linter or translator refuses can still be wrong for
// this product: internal/templatecheck checks what only the product knows
// (routes, least privilege, the schedule's input), on the same transform.
package rehearsal
