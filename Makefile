# Daybook. `make run` starts the whole system; `make test` runs every test
# against the real Postgres and Redis on their default local ports.

GO        ?= go
GOLANGCI  ?= $(shell go env GOPATH)/bin/golangci-lint
ADDR      ?= 127.0.0.1:8080

.PHONY: run test lint bench loadtest build services test-services openapi generate chaos

services:
	@scripts/services.sh

# The tests also need moto_server (S3 and SQS emulator) on 127.0.0.1:4566.
test-services:
	@scripts/services.sh --moto

run: services
	$(GO) run ./cmd/daybook run

build:
	$(GO) build -o bin/daybook ./cmd/daybook

test: test-services
	$(GO) test -race -count=1 -timeout 10m ./...

lint:
	@test -x $(GOLANGCI) || $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@v2.15.0
	$(GOLANGCI) run ./...
	scripts/lint-terraform.sh
	scripts/lint-observability.sh
	scripts/lint-compose.sh
	scripts/lint-openapi.sh
	scripts/check-client.sh

# Go benchmarks, then the ingest load tool against a freshly started instance
# (rate limit off, its own Redis key prefix), which stops itself, then the
# burn-down of a 100,000-event backlog by \`daybook worker\` alone.
bench: services build
	$(GO) test -run '^$$' -bench Admit -benchtime 2s ./transport/redisstream/
	$(GO) test -run '^$$' -bench Relay -benchtime 3x ./eventstore/
	scripts/bench-ingest.sh
	scripts/bench-drain.sh
	scripts/bench-ledger.sh

# k6 load tests (loadtest/k6/) against a freshly started instance: ingest at
# 500/s and 2,000/s, then the double-spend race. k6 is installed as a tool when
# missing (go install), never a go.mod dependency.
loadtest:
	scripts/loadtest.sh

# Fault scenarios (worker SIGKILL, Redis restart, Postgres outage, rolling
# SIGTERM, API SIGKILL) on a private Postgres and Redis, about 6 min; see chaos/README.md.
chaos: test-services
	$(GO) run ./chaos

# Writes the committed OpenAPI document (a test fails when it is stale).
openapi:
	$(GO) run ./cmd/daybook openapi > api/openapi.yaml

# Regenerates the Go client (client/client.gen.go) from api/openapi.yaml.
generate:
	$(GO) generate ./client/...
