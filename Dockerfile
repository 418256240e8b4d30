# syntax=docker/dockerfile:1

# Daybook image: one static binary on distroless, running as nonroot.
#   docker build -t daybook:local .
#   docker run --rm daybook:local            # = daybook run (API + worker)
#   docker run --rm daybook:local serve      # any subcommand: serve, worker, migrate up, reconcile...

# ---- build -----------------------------------------------------------------
# Built on the build host's platform and cross-compiled (pure Go, CGO off), so a
# multi-platform build does not run the compiler under emulation.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src

# Module download in its own layer: it is rebuilt only when go.mod/go.sum change.
COPY go.mod go.sum ./
RUN go mod download && go mod verify

COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
# The build cache is a BuildKit cache mount: it speeds rebuilds and never lands in a layer.
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH \
    go build -trimpath -ldflags="-s -w" -o /out/daybook ./cmd/daybook \
 && mkdir -p /out/data/var/archive

# ---- runtime ---------------------------------------------------------------
# distroless/static: no shell, no package manager, CA certificates and tzdata only;
# the :nonroot variant runs as uid/gid 65532. Having no shell means no HEALTHCHECK
# here (nothing to run wget/curl with, and Daybook has no health subcommand): the
# compose file health-checks postgres/redis/prometheus/grafana, gates api/worker on
# them with depends_on conditions, and Prometheus' `up` plus GET /health and
# GET /ready show the app's own state. An alpine base would buy a HEALTHCHECK at
# the price of a shell and busybox in every production container; we chose not to.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/daybook /daybook
# The working directory holds the default payload archive (DAYBOOK_ARCHIVE_URL
# defaults to file://./var/archive), so it must be writable by nonroot. Compose
# mounts a named volume here; Docker seeds a new volume with this ownership.
COPY --from=build --chown=65532:65532 /out/data /var/lib/daybook
WORKDIR /var/lib/daybook
USER nonroot
# A container is reached from outside its own loopback, so the image listens on
# every interface. Daybook then refuses to start until a key exists (give one in
# DAYBOOK_BOOTSTRAP_KEY) or DAYBOOK_AUTH=off says otherwise: never open by default.
ENV DAYBOOK_HTTP_ADDR=:8080 DAYBOOK_WORKER_ADDR=:8081
EXPOSE 8080 8081
ENTRYPOINT ["/daybook"]
CMD ["run"]
