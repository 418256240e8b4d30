// Package client is a Go client for Daybook's HTTP API, generated from the committed OpenAPI
// document (api/openapi.yaml) by oapi-codegen; client.gen.go is never edited by hand.
//
// New builds a ClientWithResponses that sends the API key (WithAPIKey), signs ingest bodies with
// Standard Webhooks headers when given the webhook secret (WithWebhookSecret), and turns every
// non-2xx answer into a *Problem error. It speaks only HTTP and imports none of the service's
// packages.
package client

// The generator is pinned and fetched by `go run`, so it is no dependency of the module; only its
// runtime (github.com/oapi-codegen/runtime) is. scripts/check-client.sh fails when client.gen.go
// differs from what this produces.
//go:generate go run github.com/oapi-codegen/oapi-codegen/v2/cmd/oapi-codegen@v2.8.2 -config oapi-codegen.yaml ../api/openapi.yaml
