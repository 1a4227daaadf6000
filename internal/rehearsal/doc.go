// Package rehearsal holds tests, and nothing else, that rehearse
// `sam deploy` of template.yaml with the real tools that deployment runs,
// in the order it runs them:
//
//  1. cfn-lint on template.yaml: no error or warning;
//  2. the SAM transform (package samtransform: the translator library,
//     after the functions' CodeUris are replaced by S3 locations as
//     `sam package` does), and cfn-lint on its output: no error or
//     warning.
//
// A template that no linter or translator refuses can still be wrong for
// this product: internal/templatecheck checks what only the product knows
// (routes, least privilege, the schedule's input), on the same transform.
package rehearsal
