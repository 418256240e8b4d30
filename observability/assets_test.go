package observability

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

// The dashboards, alert rules and their unit tests live beside the code; these
// tests tie them to the metrics NewMetrics actually exports, so renaming a
// metric without updating them fails `go test`.

const (
	dashboardPath    = "grafana/dashboards/daybook.json"
	alertsPath       = "prometheus/alerts.yml"
	alertsTestPath   = "prometheus/alerts_test.yml"
	promConfigPath   = "prometheus/prometheus.yml"
	datasourcePath   = "grafana/provisioning/datasources/prometheus.yml"
	dashProviderPath = "grafana/provisioning/dashboards/daybook.yml"
	datasourceUID    = "prometheus"
	goldenSignal     = "daybook_queue_depth"
)

// metricRef matches a Daybook metric name inside a PromQL expression or a
// promtool series selector. Label values such as "daybook.events" or
// "daybook-worker" do not match: the name must continue with an underscore.
var metricRef = regexp.MustCompile(`\bdaybook_[a-zA-Z0-9_:]+`)

var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// exportedSeries returns every series name the service exposes, mapped to the
// metric (family) name it belongs to: a histogram "x" exposes x_bucket, x_sum
// and x_count. Names come from the collectors' descriptors, so a vector
// without any label values yet still counts; each collector must also be
// registered on m.Registry, or it would never be served on /metrics.
func exportedSeries(t *testing.T) map[string]string {
	t.Helper()
	m := NewMetrics()
	series := map[string]string{}
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)

	v := reflect.ValueOf(m).Elem()
	collectorType := reflect.TypeFor[prometheus.Collector]()
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.Type().Implements(collectorType) || f.IsNil() || f.Type() == reflect.TypeFor[*prometheus.Registry]() {
			continue // the registry is a Collector too; registering it on itself would deadlock
		}
		c, ok := f.Interface().(prometheus.Collector)
		require.True(t, ok)

		err := m.Registry.Register(c)
		var already prometheus.AlreadyRegisteredError
		require.Truef(t, errors.As(err, &already), "Metrics.%s is not registered on the registry (Register: %v)", v.Type().Field(i).Name, err)

		_, isHist := c.(prometheus.Histogram)
		_, isHistVec := c.(*prometheus.HistogramVec)

		ch := make(chan *prometheus.Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			sub := fqName.FindStringSubmatch(d.String())
			require.Lenf(t, sub, 2, "cannot read the name of %s", d)
			name := sub[1]
			series[name] = name
			if isHist || isHistVec {
				for _, s := range histogramSuffixes {
					series[name+s] = name
				}
			}
		}
	}
	require.NotEmpty(t, series)
	return series
}

// metricNames returns the sorted, distinct Daybook metric names in expr.
func metricNames(expr string) []string {
	names := metricRef.FindAllString(expr, -1)
	slices.Sort(names)
	return slices.Compact(names)
}

// requireExported fails for every name in refs (name → where it is used) that
// the service does not export.
func requireExported(t *testing.T, refs map[string][]string) {
	t.Helper()
	exported := exportedSeries(t)
	for name, where := range refs {
		base := name
		for _, s := range histogramSuffixes {
			base = strings.TrimSuffix(base, s)
		}
		_, ok := exported[name]
		require.Truef(t, ok, "metric %q (base %q), used in %v, is not exported by NewMetrics", name, base, where)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

type dashboard struct {
	UID           string  `json:"uid"`
	Title         string  `json:"title"`
	SchemaVersion int     `json:"schemaVersion"`
	Panels        []panel `json:"panels"`
}

type panel struct {
	ID         int        `json:"id"`
	Type       string     `json:"type"`
	Title      string     `json:"title"`
	Datasource datasource `json:"datasource"`
	GridPos    struct {
		X, Y, W, H int
	} `json:"gridPos"`
	Targets []struct {
		Expr       string     `json:"expr"`
		RefID      string     `json:"refId"`
		Datasource datasource `json:"datasource"`
	} `json:"targets"`
	Panels []panel `json:"panels"` // collapsed rows
}

type datasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	require.NoError(t, json.Unmarshal(readFile(t, dashboardPath), &d))
	require.NotEmpty(t, d.Panels)
	return d
}

// allPanels flattens collapsed rows.
func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

type ruleFile struct {
	Groups []struct {
		Name  string `yaml:"name"`
		Rules []struct {
			Alert       string            `yaml:"alert"`
			Record      string            `yaml:"record"`
			Expr        string            `yaml:"expr"`
			For         string            `yaml:"for"`
			Labels      map[string]string `yaml:"labels"`
			Annotations map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

func loadRules(t *testing.T) ruleFile {
	t.Helper()
	var rf ruleFile
	require.NoError(t, yaml.Unmarshal(readFile(t, alertsPath), &rf))
	require.NotEmpty(t, rf.Groups)
	return rf
}

func TestDashboardQueriesExportedMetrics(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	refs := map[string][]string{}
	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" {
			continue
		}
		require.NotEmptyf(t, p.Targets, "panel %q has no query", p.Title)
		for _, tg := range p.Targets {
			require.NotEmptyf(t, tg.Expr, "panel %q target %s has no expr", p.Title, tg.RefID)
			names := metricNames(tg.Expr)
			require.NotEmptyf(t, names, "panel %q target %s queries no daybook metric: %s", p.Title, tg.RefID, tg.Expr)
			for _, n := range names {
				refs[n] = append(refs[n], "dashboard panel "+p.Title)
			}
		}
	}
	requireExported(t, refs)
}

func TestDashboardGoldenSignalFirst(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	first := d.Panels[0]
	require.Equal(t, 0, first.GridPos.X, "first panel must be top-left")
	require.Equal(t, 0, first.GridPos.Y, "first panel must be top-left")
	require.NotEqual(t, "row", first.Type)
	require.NotEmpty(t, first.Targets)
	for _, tg := range first.Targets {
		require.Equal(t, []string{goldenSignal}, metricNames(tg.Expr), "first panel must show messages waiting in the queue")
	}
	// Nothing else sits at the top-left corner or above it.
	for _, p := range d.Panels[1:] {
		require.Falsef(t, p.GridPos.Y == 0 && p.GridPos.X == 0, "panel %q overlaps the golden signal", p.Title)
	}
}

func TestDashboardUsesProvisionedDatasource(t *testing.T) {
	t.Parallel()
	d := loadDashboard(t)
	require.NotEmpty(t, d.UID)
	require.GreaterOrEqual(t, d.SchemaVersion, 36)
	for _, p := range allPanels(d.Panels) {
		if p.Type == "row" {
			continue
		}
		require.Equalf(t, datasourceUID, p.Datasource.UID, "panel %q", p.Title)
		for _, tg := range p.Targets {
			require.Equalf(t, datasourceUID, tg.Datasource.UID, "panel %q target %s", p.Title, tg.RefID)
		}
	}

	var ds struct {
		Datasources []struct {
			UID  string `yaml:"uid"`
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, datasourcePath), &ds))
	require.Len(t, ds.Datasources, 1)
	require.Equal(t, datasourceUID, ds.Datasources[0].UID)
	require.Equal(t, "prometheus", ds.Datasources[0].Type)
	require.Equal(t, "http://prometheus:9090", ds.Datasources[0].URL)

	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, dashProviderPath), &prov))
	require.Len(t, prov.Providers, 1)
	require.Equal(t, "file", prov.Providers[0].Type)
	require.Equal(t, "/var/lib/grafana/dashboards", prov.Providers[0].Options.Path)
}

func TestAlertRulesQueryExportedMetrics(t *testing.T) {
	t.Parallel()
	rf := loadRules(t)
	refs := map[string][]string{}
	alerts := 0
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			require.NotEmptyf(t, r.Expr, "rule %q has no expr", name)
			for _, n := range metricNames(r.Expr) {
				refs[n] = append(refs[n], "alert "+name)
			}
			if r.Alert == "" {
				continue
			}
			alerts++
			require.NotEmptyf(t, r.For, "alert %q has no for:", name)
			require.Containsf(t, []string{"warning", "critical"}, r.Labels["severity"], "alert %q severity", name)
			require.NotEmptyf(t, r.Annotations["summary"], "alert %q has no summary", name)
			require.Containsf(t, r.Annotations["description"], "$value", "alert %q description must show the value", name)
		}
	}
	require.NotZero(t, alerts)
	require.NotEmpty(t, refs)
	requireExported(t, refs)
}

func TestAlertRuleUnitTestsUseExportedMetrics(t *testing.T) {
	t.Parallel()
	var tf struct {
		RuleFiles []string `yaml:"rule_files"`
		Tests     []struct {
			InputSeries []struct {
				Series string `yaml:"series"`
			} `yaml:"input_series"`
			AlertRuleTest []struct {
				Alertname string `yaml:"alertname"`
			} `yaml:"alert_rule_test"`
		} `yaml:"tests"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, alertsTestPath), &tf))
	require.Equal(t, []string{filepath.Base(alertsPath)}, tf.RuleFiles)

	refs := map[string][]string{}
	tested := map[string]bool{}
	for _, tc := range tf.Tests {
		for _, s := range tc.InputSeries {
			for _, n := range metricNames(s.Series) {
				refs[n] = append(refs[n], "alerts_test.yml series "+s.Series)
			}
		}
		for _, a := range tc.AlertRuleTest {
			tested[a.Alertname] = true
		}
	}
	requireExported(t, refs)

	// Every alert has at least one unit test.
	for _, g := range loadRules(t).Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				require.Truef(t, tested[r.Alert], "alert %q has no promtool unit test", r.Alert)
			}
		}
	}
}

func TestPrometheusConfig(t *testing.T) {
	t.Parallel()
	var cfg struct {
		RuleFiles     []string `yaml:"rule_files"`
		ScrapeConfigs []struct {
			JobName        string `yaml:"job_name"`
			ScrapeInterval string `yaml:"scrape_interval"`
			StaticConfigs  []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	require.NoError(t, yaml.Unmarshal(readFile(t, promConfigPath), &cfg))

	// Rule files resolve relative to the config file.
	require.NotEmpty(t, cfg.RuleFiles)
	for _, rf := range cfg.RuleFiles {
		_, err := os.Stat(filepath.Join(filepath.Dir(promConfigPath), rf))
		require.NoErrorf(t, err, "rule file %q", rf)
	}

	targets := map[string]string{}
	for _, sc := range cfg.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			for _, tg := range st.Targets {
				targets[tg] = sc.ScrapeInterval
			}
		}
	}
	for _, want := range []string{"api:8080", "worker:8081"} {
		interval, ok := targets[want]
		require.Truef(t, ok, "no scrape target %s", want)
		require.Equal(t, "5s", interval, want)
	}
}

// TestMetricRefExtraction pins the extraction itself, so the checks above
// cannot pass by finding nothing.
func TestMetricRefExtraction(t *testing.T) {
	t.Parallel()
	got := metricNames(`histogram_quantile(0.95, sum by (le, route) (rate(daybook_http_request_duration_seconds_bucket{job="daybook-api",queue="daybook.events"}[5m])))
		/ on() max(daybook_queue_depth) + daybook_queue_depth`)
	require.Equal(t, []string{"daybook_http_request_duration_seconds_bucket", "daybook_queue_depth"}, got)

	exported := exportedSeries(t)
	require.Equal(t, "daybook_http_request_duration_seconds", exported["daybook_http_request_duration_seconds_count"])
	require.Equal(t, "daybook_event_processing_seconds", exported["daybook_event_processing_seconds_bucket"])
	require.Equal(t, "daybook_queue_depth", exported["daybook_queue_depth"])
	_, ok := exported["daybook_queue_depth_count"]
	require.False(t, ok, "only histograms expose _bucket/_sum/_count")
	_, ok = exported["daybook_renamed_metric"]
	require.False(t, ok)
}
