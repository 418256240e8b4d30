// Package openapitest checks the HTTP responses a test receives against the
// committed OpenAPI document, api/openapi.yaml, with libopenapi-validator, so
// the document and the API cannot drift without a test failing. Only
// responses are checked: tests send malformed requests on purpose. For tests
// only; it imports nothing from this module.
package openapitest

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/pb33f/libopenapi"
	validator "github.com/pb33f/libopenapi-validator"
	"github.com/pb33f/libopenapi-validator/config"
)

// documentPath is relative to this file, so a test in any package finds the
// document whatever its working directory.
const documentPath = "../../api/openapi.yaml"

// committed parses the committed document once per process: building the
// validator compiles every schema, which is too slow to repeat per test.
var committed = sync.OnceValues(func() (*checker, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return nil, errors.New("openapitest: locate source file: runtime.Caller failed")
	}
	path := filepath.Join(filepath.Dir(file), documentPath)
	spec, err := os.ReadFile(path) //nolint:gosec // G304: a path fixed relative to this source file
	if err != nil {
		// A -trimpath build reports a module-relative file name, so the
		// document cannot be found from it.
		return nil, fmt.Errorf("openapitest: read document: %w", err)
	}
	c, err := newChecker(spec)
	if err != nil {
		return nil, fmt.Errorf("openapitest: %s: %w", path, err)
	}
	return c, nil
})

// checker validates responses against one parsed document. The validator is
// safe for concurrent use: its router and schema caches are built up front and
// guarded, and TestTransport_ConcurrentUseIsRaceFree holds it to that.
type checker struct {
	validator validator.Validator
}

func newChecker(spec []byte) (*checker, error) {
	doc, err := libopenapi.NewDocument(spec)
	if err != nil {
		return nil, fmt.Errorf("parse document: %w", err)
	}
	v, errs := validator.NewValidator(doc,
		// format is an annotation by default in JSON Schema 2020-12; the
		// document's formats (uri, date-time) are promises, so assert them.
		config.WithFormatAssertions(),
	)
	if len(errs) > 0 {
		return nil, fmt.Errorf("build validator: %w", errors.Join(errs...))
	}
	return &checker{validator: v}, nil
}
