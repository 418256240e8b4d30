// Package webhook verifies incoming Standard Webhooks signatures
// (webhook-id, webhook-timestamp, webhook-signature) against one or more
// secrets, so that a secret can be rotated without refusing senders that
// still sign with the old one, and with an injected clock for the timestamp
// window. It signs too, for the client, tests and load tools.
//
// It imports the Standard Webhooks Go library for the signature itself.
package webhook
