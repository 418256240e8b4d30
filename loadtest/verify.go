package main

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/daybook/daybook/client"
)

// The drain phase reads one counter of the whole instance, which other traffic moves too. The
// verify phase reads a sample of this run's own accepted events back through the generated
// client and counts those COMPLETED, so a drain "finished" by someone else's events shows.
const (
	sampleMax     = 256 // accepted events read back after the drain
	verifyTimeout = 30 * time.Second
)

// verifyResult is what became of the sampled events.
type verifyResult struct {
	Checked   int
	Completed int
	ByStatus  map[string]int // status → events read back in it
	Errors    int            // reads that failed: a problem answer or no answer at all
	LastError string
}

// verifySample reads each event of ids with GET /events/{id}, one after another: the sample is
// small, and the reads should not compete with a worker that may still be draining.
func verifySample(ctx context.Context, api *client.ClientWithResponses, ids []string) verifyResult {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	r := verifyResult{ByStatus: map[string]int{}}
	for _, raw := range ids {
		if ctx.Err() != nil {
			r.fail(fmt.Errorf("%d of %d events not read: %w", len(ids)-r.Checked, len(ids), ctx.Err()))
			break
		}
		r.Checked++
		id, err := uuid.Parse(raw)
		if err != nil {
			r.fail(fmt.Errorf("event id %q from the ingest answer: %w", raw, err))
			continue
		}
		resp, err := api.GetEventWithResponse(ctx, id)
		if err != nil {
			r.fail(fmt.Errorf("get event %s: %w", id, err))
			continue
		}
		if resp.JSON200 == nil {
			r.fail(fmt.Errorf("get event %s: HTTP %d without a JSON event", id, resp.StatusCode()))
			continue
		}
		r.ByStatus[string(resp.JSON200.Status)]++
		if resp.JSON200.Status == client.EventOutStatusCOMPLETED {
			r.Completed++
		}
	}
	return r
}

func (r *verifyResult) fail(err error) {
	r.Errors++
	r.LastError = err.Error()
}
