package main

// The house defaults of every dashboard, variable, query and panel, on top
// of Grafana's Foundation SDK: the SDK's builders write the typed JSON
// (and the schema version it was generated from); these helpers only fix
// what all podflow dashboards share, so that each dashboard file reads as
// a list of panels and their PromQL.

import (
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/dashboardv2"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/statetimeline"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// ds is the data source reference every panel, target and query variable
// uses: the ${datasource} variable, never a fixed uid.
var ds = common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr("${datasource}")}

// newDashboard starts a dashboard with the variables every podflow dashboard
// has (datasource, cluster), the podflow tag and the dropdown of links to
// the other podflow dashboards. from is the default time range.
func newDashboard(uid, title, description, from string) *dashboard.DashboardBuilder {
	return dashboard.NewDashboardBuilder(title).
		Uid(uid).
		Description(description).
		Tags([]string{"podflow"}).
		Version(1).
		Editable().
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Refresh("1m").
		Time(from, "now").
		Timezone(common.TimeZoneBrowser).
		LiveNow(false).
		Link(dashboard.NewDashboardLinkBuilder("podflow").
			Type(dashboard.DashboardLinkTypeDashboards).
			Tags([]string{"podflow"}).
			AsDropdown(true).
			IncludeVars(true).
			KeepTime(true).
			Icon("external link")).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Annotations & Alerts").
			Datasource(common.DataSourceRef{Type: cog.ToPtr("grafana"), Uid: cog.ToPtr("-- Grafana --")}).
			Type("dashboard").
			BuiltIn(1).
			Enable(true).
			Hide(true).
			IconColor("rgba(0, 211, 255, 1)")).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(queryVar("cluster", "Cluster", "label_values(podflow_build_info, cluster)", true, false).
			Description("Cluster label of a multi-cluster Prometheus (Thanos, Mimir). All matches single-cluster setups without the label."))
}

// ---- variables ----------------------------------------------------------

// allOption is the current value "All" of a variable with an All option,
// a list for multi-value variables.
func allOption(multi bool) dashboard.VariableOption {
	if multi {
		return dashboard.VariableOption{Selected: cog.ToPtr(true),
			Text: dashboard.StringOrArrayOfString{ArrayOfString: []string{"All"}}, Value: dashboard.StringOrArrayOfString{ArrayOfString: []string{"$__all"}}}
	}
	return dashboard.VariableOption{Selected: cog.ToPtr(true),
		Text: dashboard.StringOrArrayOfString{String: cog.ToPtr("All")}, Value: dashboard.StringOrArrayOfString{String: cog.ToPtr("$__all")}}
}

func option(v string, selected bool) dashboard.VariableOption {
	return dashboard.VariableOption{Selected: cog.ToPtr(selected),
		Text: dashboard.StringOrArrayOfString{String: cog.ToPtr(v)}, Value: dashboard.StringOrArrayOfString{String: cog.ToPtr(v)}}
}

// queryVar is a Prometheus query variable, refreshed with the time range.
// all adds an "All" option whose value is the regex ".*", which also
// matches series without the label.
func queryVar(name, label, query string, all, multi bool) *dashboard.QueryVariableBuilder {
	v := dashboard.NewQueryVariableBuilder(name).
		Label(label).
		Datasource(ds).
		Query(dashboard.StringOrMap{Map: map[string]any{
			"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 5,
		}}).
		Definition(query).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Sort(dashboard.VariableSortAlphabeticalAsc).
		Multi(multi)
	if all {
		v.IncludeAll(true).AllValue(".*").Current(allOption(multi))
	}
	return v
}

// customVar is a fixed list of values; all makes it multi-valued with an
// All option (".*") as the default.
func customVar(name, label string, values []string, def string, all bool) *dashboard.CustomVariableBuilder {
	opts := make([]dashboard.VariableOption, 0, len(values))
	for _, v := range values {
		opts = append(opts, option(v, v == def))
	}
	v := dashboard.NewCustomVariableBuilder(name).
		Label(label).
		Values(dashboard.StringOrMap{String: cog.ToPtr(strings.Join(values, ","))}).
		Options(opts).
		Current(option(def, true))
	if all {
		v.Multi(true).IncludeAll(true).AllValue(".*").Current(allOption(true))
	}
	return v
}

func textVar(name, label, def, description string) *dashboard.TextBoxVariableBuilder {
	return dashboard.NewTextBoxVariableBuilder(name).
		Label(label).
		Description(description).
		DefaultValue(dashboard.StringOrMap{String: cog.ToPtr(def)}).
		Current(option(def, false)).
		Options([]dashboard.VariableOption{option(def, true)})
}

func runbookVar() *dashboard.TextBoxVariableBuilder {
	return textVar("runbook_base", "Runbooks",
		"https://github.com/podflow/podflow/blob/main/rules/runbooks",
		"Where the runbooks (rules/runbooks/<alertname>.md) are published; alert names link there.")
}

// ---- targets ------------------------------------------------------------

// rangeQ is a range query drawn over the dashboard's time range.
func rangeQ(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().Datasource(ds).RefId(ref).Expr(expr).Range().
		EditorMode(prometheus.QueryEditorModeCode)
	if legend != "" {
		q.LegendFormat(legend)
	}
	return q
}

func targets(q ...*prometheus.DataqueryBuilder) []*prometheus.DataqueryBuilder { return q }

// instantQ is an instant query returned as a table.
func instantQ(ref, expr string) *prometheus.DataqueryBuilder {
	return prometheus.NewDataqueryBuilder().Datasource(ds).RefId(ref).Expr(expr).Instant().
		Format(prometheus.PromQueryFormatTable).EditorMode(prometheus.QueryEditorModeCode)
}

// ---- panels -------------------------------------------------------------

// panelBuilder is what the SDK's panel builders (one type per panel
// plugin) have in common and every podflow panel sets.
type panelBuilder[B any] interface {
	Title(string) B
	Description(string) B
	Datasource(common.DataSourceRef) B
	WithTarget(cog.Builder[variants.Dataquery]) B
	Unit(string) B
	ColorScheme(cog.Builder[dashboard.FieldColor]) B
	Thresholds(cog.Builder[dashboard.ThresholdsConfig]) B
}

// green is the base step of every threshold list.
var green = dashboard.Threshold{Color: "green"}

// panel sets title, description, the ${datasource}, the targets, the unit,
// the colour mode and the thresholds (green, then (value, colour) steps).
func panel[B panelBuilder[B]](b B, title, desc, unit string, color dashboard.FieldColorModeId, steps []dashboard.Threshold, targets []*prometheus.DataqueryBuilder) B {
	b.Title(title).Description(desc).Datasource(ds).Unit(unit).
		ColorScheme(dashboard.NewFieldColorBuilder().Mode(color)).
		Thresholds(dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).
			Steps(append([]dashboard.Threshold{green}, steps...)))
	for _, t := range targets {
		b.WithTarget(t)
	}
	return b
}

func timeSeriesPanel(title, desc, unit string, stacked bool, targets ...*prometheus.DataqueryBuilder) *timeseries.PanelBuilder {
	stacking, fill := common.StackingModeNone, 10.0
	if stacked {
		stacking, fill = common.StackingModeNormal, 40
	}
	return panel(timeseries.NewPanelBuilder(), title, desc, unit, dashboard.FieldColorModeIdPaletteClassic, nil, targets).
		DrawStyle(common.GraphDrawStyleLine).
		LineWidth(1).
		FillOpacity(fill).
		ShowPoints(common.VisibilityModeNever).
		SpanNulls(common.BoolOrFloat64{Bool: cog.ToPtr(false)}).
		AxisSoftMin(0).
		Stacking(common.NewStackingConfigBuilder().Mode(stacking).Group("A")).
		LineInterpolation(common.LineInterpolationLinear).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeTable).
			Placement(common.LegendPlacementRight).
			ShowLegend(true).
			Calcs([]string{"mean", "max", "lastNotNull"})).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeMulti).Sort(common.SortOrderDescending))
}

// above is a threshold step: color from value on.
func above(value float64, color string) dashboard.Threshold {
	return dashboard.Threshold{Value: &value, Color: color}
}

// statPanel is a single-value panel coloured by thresholds above the green
// base.
func statPanel(title, desc, unit string, target *prometheus.DataqueryBuilder, steps ...dashboard.Threshold) *stat.PanelBuilder {
	return panel(stat.NewPanelBuilder(), title, desc, unit, dashboard.FieldColorModeIdThresholds, steps, []*prometheus.DataqueryBuilder{target}).
		ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"}).Fields("").Values(false)).
		ColorMode(common.BigValueColorModeValue).
		GraphMode(common.BigValueGraphModeArea).
		JustifyMode(common.BigValueJustifyModeAuto).
		TextMode(common.BigValueTextModeAuto).
		Orientation(common.VizOrientationAuto).
		WideLayout(true)
}

// tablePanel shows instant table queries, merged when there are several.
// hide lists columns to drop, rename maps label columns to headers.
func tablePanel(title, desc, unit string, targets []*prometheus.DataqueryBuilder, hide []string, rename map[string]string) *table.PanelBuilder {
	exclude := map[string]bool{"Time": true, "__name__": true}
	for _, h := range hide {
		exclude[h] = true
	}
	if rename == nil {
		rename = map[string]string{}
	}
	p := panel(table.NewPanelBuilder(), title, desc, unit, dashboard.FieldColorModeIdPaletteClassic, nil, targets)
	if len(targets) > 1 {
		p.WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}})
	}
	return p.WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
		"excludeByName": exclude, "renameByName": rename, "indexByName": map[string]any{},
	}}).
		Align(common.FieldTextAlignmentAuto).
		Filterable(true).
		ShowHeader(true).
		CellHeight(common.TableCellHeightSm).
		Footer(common.NewTableFooterOptionsBuilder().Show(false).Reducer([]string{"sum"}).CountRows(false))
}

// timelinePanel draws discrete states (alert firing, informer synced).
func timelinePanel(title, desc, unit string, mappings []dashboard.ValueMapping, targets ...*prometheus.DataqueryBuilder) *statetimeline.PanelBuilder {
	return panel(statetimeline.NewPanelBuilder(), title, desc, unit, dashboard.FieldColorModeIdThresholds, nil, targets).
		Mappings(mappings).
		FillOpacity(80).
		LineWidth(0).
		ShowValue(common.VisibilityModeNever).
		MergeValues(true).
		RowHeight(0.9).
		AlignValue(common.TimelineValueAlignmentLeft).
		Legend(common.NewVizLegendOptionsBuilder().
			DisplayMode(common.LegendDisplayModeList).
			Placement(common.LegendPlacementBottom).
			ShowLegend(true)).
		Tooltip(common.NewVizTooltipOptionsBuilder().Mode(common.TooltipDisplayModeSingle).Sort(common.SortOrderNone))
}

// valueMap maps values to text and colour: value, text, colour, ...
func valueMap(triples ...string) []dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	var index int32
	for i := 0; i+2 < len(triples); i += 3 {
		opts[triples[i]] = dashboard.ValueMappingResult{
			Text: cog.ToPtr(triples[i+1]), Color: cog.ToPtr(triples[i+2]), Index: cog.ToPtr(index),
		}
		index++
	}
	return []dashboard.ValueMapping{{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}}
}

// ---- field overrides ----------------------------------------------------

func prop(id string, value any) dashboard.DynamicConfigValue {
	return dashboard.DynamicConfigValue{Id: id, Value: value}
}

func props(p ...dashboard.DynamicConfigValue) []dashboard.DynamicConfigValue { return p }

func fixedColor(c string) dashboard.DynamicConfigValue {
	return prop("color", dashboard.FieldColor{Mode: dashboard.FieldColorModeIdFixed, FixedColor: cog.ToPtr(c)})
}

func lineStyle(fill common.LineStyleFill, dash ...float64) dashboard.DynamicConfigValue {
	return prop("custom.lineStyle", common.LineStyle{Fill: &fill, Dash: dash})
}

// runbookLink links an alert name cell to its runbook.
func runbookLink(title string) []dashboard.DynamicConfigValue {
	return props(prop("links", []dashboardv2.DataLink{{
		Title: title, Url: "${runbook_base}/${__value.raw}.md", TargetBlank: cog.ToPtr(true),
	}}))
}

// ---- rendering ----------------------------------------------------------

// build renders a dashboard and numbers its panels in order, so that a
// link to one panel (viewPanel=N) stays valid across regenerations.
//
// It also clears the placement the SDK's constructors give every link and
// annotation ("inControlsMenu", the only value the schema has): Grafana
// draws links without a placement above the panels, and those with it only
// inside the dashboard controls menu, where the podflow dropdown would hide.
func build(b *dashboard.DashboardBuilder) (dashboard.Dashboard, error) {
	d, err := b.Build()
	if err != nil {
		return d, err
	}
	for i := range d.Links {
		d.Links[i].Placement = nil
	}
	for i := range d.Annotations.List {
		d.Annotations.List[i].Placement = nil
	}
	var id uint32
	for i := range d.Panels {
		id++
		if p := d.Panels[i].Panel; p != nil {
			p.Id = cog.ToPtr(id)
		}
		if r := d.Panels[i].RowPanel; r != nil {
			r.Id = id
		}
	}
	return d, nil
}
