package harness

import "net/url"

// The pages the demo prints and the browser checks open.
const (
	// PrometheusAlertsPath is Prometheus' alerts page.
	PrometheusAlertsPath = "/alerts"
	// AlertmanagerAlertsPath is Alertmanager's alerts page: the classic UI's
	// address, where a small page over the API stands in for it
	// (tools/webui/alertmanager.sh says why).
	AlertmanagerAlertsPath = "/#/alerts"
	// PairTrafficQuery is the PromQL of the prepared query: the bytes per
	// second of every workload pair.
	PairTrafficQuery = `sum by (source_namespace, source_workload, destination_namespace, destination_workload) (rate(podflow_bytes_total[1m]))`
)

// PairTrafficQueryPath is Prometheus' query page with PairTrafficQuery
// graphed over the last 15 minutes.
var PairTrafficQueryPath = "/query?" + url.Values{
	"g0.expr": {PairTrafficQuery}, "g0.tab": {"graph"}, "g0.range_input": {"15m"}, "g0.show_tree": {"0"},
}.Encode()
