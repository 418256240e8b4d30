package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/danielgtaylor/huma/v2"
)

type healthOutput struct {
	Body struct {
		Status string `json:"status" example:"ok"`
	}
}

type readyOutput struct {
	Body struct {
		Status string            `json:"status" example:"ready"`
		Checks map[string]string `json:"checks"`
	}
}

func (s *Server) registerOps() {
	register(s, huma.Operation{
		Security:    public,
		OperationID: "health", Method: http.MethodGet, Path: "/health", Tags: []string{"Operations"},
		Summary: "The process is alive",
	}, func(context.Context, *struct{}) (*healthOutput, error) {
		out := &healthOutput{}
		out.Body.Status = "ok"
		return out, nil
	})
	register(s, huma.Operation{
		Security:    public,
		OperationID: "ready", Method: http.MethodGet, Path: "/ready", Tags: []string{"Operations"},
		Summary: "Postgres, Redis and the queue are reachable", Errors: []int{503},
	}, s.ready)
}

func (s *Server) ready(ctx context.Context, _ *struct{}) (*readyOutput, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	checks := map[string]func(context.Context) error{
		"postgres": s.deps.Pool.Ping,
		"redis":    func(ctx context.Context) error { return s.deps.Redis.Ping(ctx).Err() },
	}
	if s.deps.QueueReady != nil {
		checks["queue"] = s.deps.QueueReady
	}
	out := &readyOutput{}
	out.Body.Checks = map[string]string{}
	var down []string
	for name, check := range checks {
		if err := check(ctx); err != nil {
			out.Body.Checks[name] = "down: " + err.Error()
			if name == "redis" && s.deps.RedisOptional {
				out.Body.Checks[name] = "degraded (ingestion fails open): " + err.Error()
				continue
			}
			down = append(down, name)
		} else {
			out.Body.Checks[name] = "ok"
		}
	}
	if len(down) > 0 {
		return nil, huma.Error503ServiceUnavailable("not ready: " + joinSorted(down) + " unreachable")
	}
	out.Body.Status = "ready"
	return out, nil
}

func joinSorted(names []string) string {
	slices.Sort(names)
	return strings.Join(names, ", ")
}
