package sqs

// DeleteBatch exposes deleteBatch to the tests of package sqs_test, which
// reach moto through internal/testmoto (which imports this package).
var DeleteBatch = deleteBatch
