package lineage

import "testing"

func TestMatch(t *testing.T) {
	old := Candidate{DiffIDs: []string{"a", "b"}, Superseded: true}
	cur := Candidate{DiffIDs: []string{"a", "b"}}
	short := Candidate{DiffIDs: []string{"a"}}
	other := Candidate{DiffIDs: []string{"x"}}
	empty := Candidate{}
	tests := []struct {
		name  string
		bases []Candidate
		image []string
		want  int
	}{
		{"none", []Candidate{other, empty}, []string{"a", "b", "c"}, -1},
		{"longest prefix", []Candidate{short, cur}, []string{"a", "b", "c"}, 1},
		{"current wins a tie, whatever the order", []Candidate{old, cur}, []string{"a", "b", "c"}, 1},
		{"current wins a tie, listed first", []Candidate{cur, old}, []string{"a", "b", "c"}, 0},
		{"superseded still matches alone", []Candidate{short, old}, []string{"a", "b"}, 1},
		{"a base longer than the image", []Candidate{cur}, []string{"a"}, -1},
		{"first of two equal", []Candidate{short, short}, []string{"a"}, 0},
	}
	for _, tc := range tests {
		if got := Match(tc.bases, tc.image); got != tc.want {
			t.Errorf("%s: Match = %d, want %d", tc.name, got, tc.want)
		}
	}
}
