package topology

import (
	_ "embed"
	"html/template"
	"io"
	"slices"
)

//go:embed page.html.tmpl
var pageText string

var page = template.Must(template.New("page").Funcs(template.FuncMap{"bytes": HumanBytes, "name": name, "duration": shortDuration}).Parse(pageText))

type pageRow struct {
	Edge
	Share float64
}

// WriteHTML writes a self-contained page: the drawing (the SVG from SVG)
// inline, a legend, and every edge in a table, busiest first, new edges on
// top. It loads nothing from anywhere.
func WriteHTML(w io.Writer, g *Graph, svg []byte) error {
	el, err := svgElement(svg)
	if err != nil {
		return err
	}
	var total float64
	for i := range g.Edges {
		total += g.Edges[i].Bytes
	}
	rows := make([]pageRow, len(g.Edges))
	for i := range g.Edges {
		rows[i].Edge = g.Edges[i]
		if total > 0 {
			rows[i].Share = 100 * g.Edges[i].Bytes / total
		}
	}
	slices.SortStableFunc(rows, func(a, b pageRow) int {
		switch {
		case a.New() != b.New():
			if a.New() {
				return -1
			}
			return 1
		case a.Bytes > b.Bytes:
			return -1
		case a.Bytes < b.Bytes:
			return 1
		}
		return 0
	})
	return page.Execute(w, struct {
		Title   string
		Graph   *Graph
		Drawing template.HTML
		Rows    []pageRow
		Warning string
	}{Title(g), g, template.HTML(el), rows, colourWarning}) //nolint:gosec // dot's own SVG of escaped DOT labels
}
