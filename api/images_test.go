package api

import (
	"errors"
	"strings"
	"testing"
)

func TestParseImageRef(t *testing.T) {
	good := map[string][2]string{
		"team/train:1.0":                         {"team/train", "1.0"},
		"localhost:7082/team/train":              {"team/train", "latest"},
		"eiwizard/custom-cpu-base:1.0":           {"eiwizard/custom-cpu-base", "1.0"},
		"a/b@sha256:" + strings.Repeat("ab", 32): {"a/b", "sha256:" + strings.Repeat("ab", 32)},
	}
	for in, want := range good {
		repo, ref, err := ParseImageRef(in)
		if err != nil || repo != want[0] || ref != want[1] {
			t.Errorf("ParseImageRef(%q) = %q, %q, %v; want %v", in, repo, ref, err, want)
		}
	}
	for in, names := range map[string]string{
		"../../x":       `image reference "../../x": repository "../x"`,
		"Team/Train:1":  `repository "Team/Train"`,
		"team//x:1":     `repository "team//x"`,
		"team/x:.bad":   `tag ".bad"`,
		"team/x@sha256": `"sha256" is not a valid digest`,
		":1":            "want repo[:tag]",
	} {
		_, _, err := ParseImageRef(in)
		if _, code := statusOf(err); err == nil || !errors.Is(err, ErrInvalid) || code != 400 || !strings.Contains(err.Error(), names) {
			t.Errorf("ParseImageRef(%q) = %v; want a 400 naming %s", in, err, names)
		}
	}
}
