package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestReports(t *testing.T) {
	f := newFixture(t)
	img := f.custom(t, []tf{whiteout("bin/.wh.ls"), file("usr/local/bin/su2", "x", 0o4755)})
	rep := mustAudit(t, NewAuditor(f.catalog, nil), img, Options{Ignore: []string{RuleSetuid}})
	rep.Image = "example/app:1"
	if rep.Verdict != Fail || len(rep.Violations) != 1 || len(rep.Ignored) != 1 {
		t.Fatalf("%s", dump(rep))
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"verdict: FAIL", "example/app:1", RuleProtDeleted, "/bin/ls", "ignored (1)", RuleSetuid, "eiwizard/custom-cpu-base:1.0"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("text report lacks %q:\n%s", s, text.String())
		}
	}

	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Verdict != Fail || back.Violations[0] != rep.Violations[0] || back.Base.DiffIDs[0] != rep.Base.DiffIDs[0] || back.Duration != rep.Duration {
		t.Fatalf("JSON round trip: %+v", back)
	}

	var sb bytes.Buffer
	if err := rep.WriteSARIF(&sb); err != nil {
		t.Fatal(err)
	}
	var sarif struct {
		Schema  string `json:"$schema"`
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Name  string `json:"name"`
					Rules []struct {
						ID string `json:"id"`
					} `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				RuleIndex int    `json:"ruleIndex"`
				Level     string `json:"level"`
				Message   struct {
					Text string `json:"text"`
				} `json:"message"`
				Locations []struct {
					PhysicalLocation struct {
						ArtifactLocation struct {
							URI string `json:"uri"`
						} `json:"artifactLocation"`
					} `json:"physicalLocation"`
					LogicalLocations []struct {
						Name string `json:"name"`
					} `json:"logicalLocations"`
				} `json:"locations"`
				Suppressions []struct {
					Kind string `json:"kind"`
				} `json:"suppressions"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal(sb.Bytes(), &sarif); err != nil {
		t.Fatal(err)
	}
	if sarif.Version != "2.1.0" || !strings.Contains(sarif.Schema, "sarif-2.1.0") || len(sarif.Runs) != 1 {
		t.Fatalf("SARIF header: %s", sb.String())
	}
	run := sarif.Runs[0]
	if run.Tool.Driver.Name != "malocal-audit" || len(run.Tool.Driver.Rules) != len(Rules) || len(run.Results) != 2 {
		t.Fatalf("SARIF run: %s", sb.String())
	}
	r0 := run.Results[0]
	if r0.RuleID != RuleProtDeleted || run.Tool.Driver.Rules[r0.RuleIndex].ID != RuleProtDeleted || r0.Level != "error" ||
		r0.Locations[0].PhysicalLocation.ArtifactLocation.URI != "bin/ls" || r0.Locations[0].LogicalLocations[0].Name != rep.Violations[0].Layer {
		t.Fatalf("SARIF result: %+v", r0)
	}
	if len(run.Results[1].Suppressions) != 1 || len(r0.Suppressions) != 0 {
		t.Fatalf("SARIF suppressions: %s", sb.String())
	}
}

func TestHostileLayerReportStaysReadable(t *testing.T) {
	f := newFixture(t)
	var es []tf
	for i := 0; i < 500; i++ {
		es = append(es, file("/abs/"+strings.Repeat("x", i%7)+string(rune('a'+i%26))+"/"+string(rune('0'+i%10)), "x", 0o644))
	}
	rep := mustAudit(t, NewAuditor(f.catalog, nil), f.custom(t, es), Options{})
	if len(rep.Violations) != maxPerRuleLayer+1 || !strings.Contains(rep.Violations[maxPerRuleLayer].Detail, "and 450 more") {
		t.Fatalf("%d violations, last %+v", len(rep.Violations), rep.Violations[len(rep.Violations)-1])
	}
}

func TestFindingsPerLayerBounded(t *testing.T) {
	f := newFixture(t)
	var es []tf
	for i := 0; i < maxFindingsPerLayer+10; i++ {
		es = append(es, file(fmt.Sprintf("/abs/%d", i), "", 0o644))
	}
	rep := mustAudit(t, NewAuditor(f.catalog, nil), f.custom(t, es), Options{})
	last := rep.Violations[len(rep.Violations)-1]
	if rep.Verdict != Fail || len(rep.Violations) != maxPerRuleLayer+1 || !strings.Contains(last.Detail, fmt.Sprintf("and %d more", maxFindingsPerLayer+1-maxPerRuleLayer)) {
		t.Fatalf("%d violations, last %+v", len(rep.Violations), last)
	}
}
