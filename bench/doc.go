// Package bench holds benchmarks of the broker against local stand-ins for
// its dependencies: dynalite for DynamoDB and providertest for an OAuth
// provider. It has no non-test code; see README.md for how to run the
// benchmarks and what they measured.
package bench
