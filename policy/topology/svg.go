package topology

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
)

// SVG lays the DOT text out with Graphviz (the dot command at dotPath) and
// returns the SVG document.
func SVG(ctx context.Context, dotPath string, dot []byte) ([]byte, error) {
	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, dotPath, "-Tsvg")
	cmd.Stdin = bytes.NewReader(dot)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s not found: install Graphviz (`make setup`) or write only DOT: %w", dotPath, err)
		}
		return nil, fmt.Errorf("%s -Tsvg: %w: %s", dotPath, err, bytes.TrimSpace(stderr.Bytes()))
	}
	return out.Bytes(), nil
}

// svgElement strips the XML prolog and doctype dot writes before <svg, so
// that the drawing can stand inside an HTML page.
func svgElement(svg []byte) ([]byte, error) {
	i := bytes.Index(svg, []byte("<svg"))
	if i < 0 {
		return nil, errors.New("no <svg> element in the drawing")
	}
	return svg[i:], nil
}
