package openapitest

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// widgetDocument is small enough that each test controls exactly what the
// document allows.
const widgetDocument = `openapi: 3.1.0
info: {title: widgets, version: 1.0.0}
paths:
  /widgets/{id}:
    get:
      parameters:
        - {in: path, name: id, required: true, schema: {type: string, format: uuid}}
      responses:
        "200":
          description: OK
          headers:
            X-Widget-Version:
              required: true
              schema: {type: integer}
          content:
            application/json:
              schema:
                type: object
                additionalProperties: false
                required: [id, name]
                properties:
                  id: {type: string}
                  name: {type: string}
        "404":
          description: Not Found
          content:
            application/problem+json:
              schema:
                type: object
                properties:
                  type: {type: string, format: uri}
                  title: {type: string}
`

const widgetID = "0b9f6d3e-5f0a-4c1e-9a51-3d2f7c1b8e40"

// recorder is a testing.TB that keeps Errorf calls instead of failing the
// test; everything else goes to the real test.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func (r *recorder) Errors() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.errors...)
}

// answer is one canned response.
type answer struct {
	status      int
	contentType string
	header      http.Header
	body        string
}

// serve starts a server that gives every request the same answer.
func serve(t *testing.T, a answer) *httptest.Server {
	t.Helper()
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range a.header {
			w.Header()[k] = v
		}
		if a.contentType != "" {
			w.Header().Set("Content-Type", a.contentType)
		}
		w.WriteHeader(a.status)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(hs.Close)
	return hs
}

func widgetChecker(t *testing.T) *checker {
	t.Helper()
	c, err := newChecker([]byte(widgetDocument))
	require.NoError(t, err)
	return c
}

// get sends GET path through a client checked against c and returns the body
// the caller reads and what the recorder caught.
func get(t *testing.T, c *checker, a answer, path string) (string, []string) {
	t.Helper()
	hs := serve(t, a)
	rec := &recorder{TB: t}
	client := &http.Client{Transport: c.transport(rec, hs.Client().Transport)}
	resp, err := client.Get(hs.URL + path)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(body), rec.Errors()
}

func widgetOK() answer {
	return answer{
		status: http.StatusOK, contentType: "application/json",
		header: http.Header{"X-Widget-Version": {"3"}},
		body:   `{"id":"` + widgetID + `","name":"sprocket"}`,
	}
}

func TestCheck_AllowedResponsePasses(t *testing.T) {
	t.Parallel()
	_, errs := get(t, widgetChecker(t), widgetOK(), "/widgets/"+widgetID)
	require.Empty(t, errs)
}

func TestCheck_UndeclaredStatusIsReported(t *testing.T) {
	t.Parallel()
	a := widgetOK()
	a.status = http.StatusTeapot
	_, errs := get(t, widgetChecker(t), a, "/widgets/"+widgetID)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "GET /widgets/"+widgetID+" answered 418")
	require.Contains(t, errs[0], "418")
	require.Contains(t, errs[0], `body (`)
}

func TestCheck_MissingRequiredPropertyIsReported(t *testing.T) {
	t.Parallel()
	a := widgetOK()
	a.body = `{"id":"` + widgetID + `"}`
	_, errs := get(t, widgetChecker(t), a, "/widgets/"+widgetID)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "answered 200")
	require.Contains(t, errs[0], "'name'", "the schema error names the property")
	require.Contains(t, errs[0], a.body, "the body is quoted")
}

func TestCheck_UndeclaredContentTypeIsReported(t *testing.T) {
	t.Parallel()
	a := widgetOK()
	a.contentType = "text/plain"
	_, errs := get(t, widgetChecker(t), a, "/widgets/"+widgetID)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "text/plain")
}

func TestCheck_MissingRequiredHeaderIsReported(t *testing.T) {
	t.Parallel()
	a := widgetOK()
	a.header = nil
	_, errs := get(t, widgetChecker(t), a, "/widgets/"+widgetID)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "X-Widget-Version")
}

func TestCheck_ProblemTypeMustBeAnAbsoluteURI(t *testing.T) {
	t.Parallel()
	for typ, wantReported := range map[string]bool{
		"/problems/x":                    true,
		"https://example.com/problems/x": false,
		"urn:daybook:problem:x":          false,
	} {
		t.Run(typ, func(t *testing.T) {
			t.Parallel()
			a := answer{
				status: http.StatusNotFound, contentType: "application/problem+json",
				body: `{"type":"` + typ + `","title":"Not Found"}`,
			}
			_, errs := get(t, widgetChecker(t), a, "/widgets/"+widgetID)
			if !wantReported {
				require.Empty(t, errs)
				return
			}
			require.Len(t, errs, 1)
			require.Contains(t, errs[0], "$.type")
			require.Contains(t, errs[0], "uri")
		})
	}
}

// A path parameter that breaks its schema still selects the operation: the
// request is the test's business, the response is still checked.
func TestCheck_ExistingRouteIsCheckedWhateverItsParameters(t *testing.T) {
	t.Parallel()
	a := answer{
		status: http.StatusNotFound, contentType: "application/problem+json",
		body: `{"type":"/problems/not-found","title":"Not Found"}`,
	}
	_, errs := get(t, widgetChecker(t), a, "/widgets/not-a-uuid")
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "GET /widgets/not-a-uuid answered 404")
}

func TestCheck_RequestsOutsideTheDocumentAreSkipped(t *testing.T) {
	t.Parallel()
	c := widgetChecker(t)
	a := answer{status: http.StatusNotFound, contentType: "text/plain", body: "404 page not found"}
	for _, path := range []string{"/metrics", "/nowhere/at/all", "/widgets"} {
		t.Run(path, func(t *testing.T) {
			t.Parallel()
			body, errs := get(t, c, a, path)
			require.Empty(t, errs)
			require.Equal(t, a.body, body)
		})
	}
	t.Run("a method the path does not have", func(t *testing.T) {
		t.Parallel()
		hs := serve(t, answer{status: http.StatusMethodNotAllowed, contentType: "text/plain", body: "no"})
		rec := &recorder{TB: t}
		client := &http.Client{Transport: c.transport(rec, hs.Client().Transport)}
		resp, err := client.Post(hs.URL+"/widgets/"+widgetID, "application/json", strings.NewReader("{}"))
		require.NoError(t, err)
		resp.Body.Close()
		require.Empty(t, rec.Errors())
	})
}

func TestCheck_CallerStillReadsTheWholeBody(t *testing.T) {
	t.Parallel()
	c := widgetChecker(t)
	long := strings.Repeat("é", 40<<10) // 80 KiB, two bytes a rune
	t.Run("allowed", func(t *testing.T) {
		t.Parallel()
		a := widgetOK()
		a.body = `{"id":"` + widgetID + `","name":"` + long + `"}`
		body, errs := get(t, c, a, "/widgets/"+widgetID)
		require.Empty(t, errs)
		require.Equal(t, a.body, body)
	})
	t.Run("reported, with the body cut short in the report", func(t *testing.T) {
		t.Parallel()
		a := widgetOK()
		a.body = `{"id":"` + widgetID + `","name":"` + long + `","extra":1}`
		body, errs := get(t, c, a, "/widgets/"+widgetID)
		require.Equal(t, a.body, body)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], fmt.Sprintf("body (%d bytes): ", len(a.body)))
		require.Less(t, len(errs[0]), bodyShownMax+2<<10, "the report quotes about 2 KiB of the body")
		require.True(t, strings.HasSuffix(errs[0], "é…"), "cut at a rune boundary")
	})
}

func TestCheck_CheckLeavesTheRequestAndTheBodyToTheCaller(t *testing.T) {
	t.Parallel()
	c := widgetChecker(t)
	a := widgetOK()
	req := httptest.NewRequest(http.MethodGet, "/widgets/"+widgetID, strings.NewReader("request body"))
	rec := httptest.NewRecorder()
	rec.Header()["X-Widget-Version"] = []string{"3"}
	rec.Header().Set("Content-Type", a.contentType)
	rec.WriteHeader(a.status)
	_, _ = io.WriteString(rec, a.body)
	resp := rec.Result()

	tb := &recorder{TB: t}
	c.check(tb, req, resp)
	require.Empty(t, tb.Errors())

	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, a.body, string(body))
	reqBody, err := io.ReadAll(req.Body)
	require.NoError(t, err)
	require.Equal(t, "request body", string(reqBody), "the request body is not touched")
}

func TestTransport_ClosingIdleConnectionsReachesTheWrappedTransport(t *testing.T) {
	t.Parallel()
	next := &closeCounter{RoundTripper: http.DefaultTransport}
	client := &http.Client{Transport: widgetChecker(t).transport(t, next)}
	client.CloseIdleConnections()
	require.Equal(t, 1, next.closed)
}

type closeCounter struct {
	http.RoundTripper
	closed int
}

func (c *closeCounter) CloseIdleConnections() { c.closed++ }
