package audit

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report for a person to read.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "verdict: %s\n", strings.ToUpper(string(r.Verdict)))
	if r.Image != "" {
		fmt.Fprintf(&b, "image:   %s\n", r.Image)
	}
	fmt.Fprintf(&b, "digest:  %s\nconfig:  %s\n", r.ManifestDigest, r.ConfigDigest)
	if r.Base != nil {
		state := "current"
		if r.Base.Superseded {
			state = "superseded"
		}
		fmt.Fprintf(&b, "base:    %s (%s)\n", r.Base.Ref(), state)
	} else {
		fmt.Fprintf(&b, "base:    none matched\n")
	}
	fmt.Fprintf(&b, "layers:  %d (%d added), %s uncompressed\n", r.Layers, r.AddedLayers, mib(r.Size))
	if r.Cached {
		fmt.Fprintf(&b, "cached:  verdict of %s\n", r.Started.Format("2006-01-02T15:04:05Z"))
	}
	if r.Note != "" {
		fmt.Fprintf(&b, "note:    %s\n", r.Note)
	}
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	section := func(title string, vs []Violation) {
		if len(vs) == 0 {
			return
		}
		fmt.Fprintf(&b, "\n%s (%d):\n", title, len(vs))
		fmt.Fprintln(tw, "RULE\tLAYER\tPATH\tDETAIL")
		for _, v := range vs {
			layer := "image"
			if v.LayerIndex >= 0 {
				layer = fmt.Sprintf("%d %s", v.LayerIndex, shortDigest(v.Layer))
			}
			p := v.Path
			if p == "" {
				p = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", v.Rule, layer, p, v.Detail)
		}
		tw.Flush()
	}
	section("violations", r.Violations)
	section("ignored", r.Ignored)
	_, err := io.WriteString(w, b.String())
	return err
}

func shortDigest(d string) string {
	if i := strings.IndexByte(d, ':'); i >= 0 && len(d) > i+13 {
		return d[:i+13]
	}
	return d
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// SARIF 2.1.0, the subset code-scanning tools read.
type sarifLog struct {
	Schema  string     `json:"$schema"`
	Version string     `json:"version"`
	Runs    []sarifRun `json:"runs"`
}

type sarifRun struct {
	Tool       sarifTool         `json:"tool"`
	Results    []sarifResult     `json:"results"`
	Properties map[string]string `json:"properties,omitempty"`
}

type sarifTool struct {
	Driver sarifDriver `json:"driver"`
}

type sarifDriver struct {
	Name           string      `json:"name"`
	InformationURI string      `json:"informationUri,omitempty"`
	Rules          []sarifRule `json:"rules"`
}

type sarifText struct {
	Text string `json:"text"`
}

type sarifRule struct {
	ID                   string       `json:"id"`
	Name                 string       `json:"name"`
	ShortDescription     sarifText    `json:"shortDescription"`
	FullDescription      sarifText    `json:"fullDescription"`
	DefaultConfiguration sarifRuleCfg `json:"defaultConfiguration"`
}

type sarifRuleCfg struct {
	Level string `json:"level"`
}

type sarifResult struct {
	RuleID       string            `json:"ruleId"`
	RuleIndex    int               `json:"ruleIndex"`
	Level        string            `json:"level"`
	Message      sarifText         `json:"message"`
	Locations    []sarifLocation   `json:"locations,omitempty"`
	Suppressions []sarifSuppressed `json:"suppressions,omitempty"`
}

type sarifSuppressed struct {
	Kind string `json:"kind"`
}

type sarifLocation struct {
	PhysicalLocation *sarifPhysical `json:"physicalLocation,omitempty"`
	LogicalLocations []sarifLogical `json:"logicalLocations,omitempty"`
}

type sarifPhysical struct {
	ArtifactLocation sarifArtifact `json:"artifactLocation"`
}

type sarifArtifact struct {
	URI       string `json:"uri"`
	URIBaseID string `json:"uriBaseId,omitempty"`
}

type sarifLogical struct {
	Name               string `json:"name"`
	FullyQualifiedName string `json:"fullyQualifiedName,omitempty"`
	Kind               string `json:"kind"`
}

// WriteSARIF writes the report as a SARIF 2.1.0 log: one result per
// violation (ignored ones carry an external suppression), located by the
// path in the image's file system and the layer.
func (r *Report) WriteSARIF(w io.Writer) error {
	drv := sarifDriver{Name: "malocal-audit", InformationURI: "https://github.com/malocal/malocal"}
	idx := map[string]int{}
	for i, ri := range Rules {
		idx[ri.ID] = i
		drv.Rules = append(drv.Rules, sarifRule{
			ID: ri.ID, Name: ri.Name,
			ShortDescription:     sarifText{ri.Short},
			FullDescription:      sarifText{ri.Full},
			DefaultConfiguration: sarifRuleCfg{"error"},
		})
	}
	results := []sarifResult{}
	conv := func(v Violation, ignored bool) sarifResult {
		msg := v.Detail
		if v.Path != "" {
			msg = v.Path + ": " + msg
		}
		res := sarifResult{RuleID: v.Rule, RuleIndex: idx[v.Rule], Level: "error", Message: sarifText{msg}}
		var loc sarifLocation
		if v.Path != "" {
			loc.PhysicalLocation = &sarifPhysical{ArtifactLocation: sarifArtifact{URI: strings.TrimPrefix(v.Path, "/"), URIBaseID: "ROOTFS"}}
		}
		if v.LayerIndex >= 0 {
			loc.LogicalLocations = []sarifLogical{{Name: v.Layer, FullyQualifiedName: fmt.Sprintf("layer[%d]", v.LayerIndex), Kind: "module"}}
		} else {
			loc.LogicalLocations = []sarifLogical{{Name: r.ManifestDigest, Kind: "module"}}
		}
		res.Locations = []sarifLocation{loc}
		if ignored {
			res.Suppressions = []sarifSuppressed{{Kind: "external"}}
		}
		return res
	}
	for _, v := range r.Violations {
		results = append(results, conv(v, false))
	}
	for _, v := range r.Ignored {
		results = append(results, conv(v, true))
	}
	props := map[string]string{"verdict": string(r.Verdict), "manifestDigest": r.ManifestDigest, "configDigest": r.ConfigDigest}
	if r.Image != "" {
		props["image"] = r.Image
	}
	log := sarifLog{
		Schema:  "https://json.schemastore.org/sarif-2.1.0.json",
		Version: "2.1.0",
		Runs:    []sarifRun{{Tool: sarifTool{Driver: drv}, Results: results, Properties: props}},
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(log)
}
