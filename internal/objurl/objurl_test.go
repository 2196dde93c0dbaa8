package objurl_test

import (
	"strings"
	"testing"

	"github.com/malocal/malocal/internal/objurl"
)

func TestParse(t *testing.T) {
	for in, want := range map[string]objurl.URL{
		"s3://b/k/x":      {"b", "k/x"},
		"obs://b":         {"b", ""},
		"obs://b/dir/":    {"b", "dir/"},
		"s3://Bucket/../": {"Bucket", "../"}, // left to the store
	} {
		u, err := objurl.Parse(in)
		if err != nil || u != want {
			t.Errorf("Parse(%q) = %v, %v; want %v", in, u, err, want)
		}
		if !objurl.Is(in) {
			t.Errorf("Is(%q) = false", in)
		}
	}
	for in, wantErr := range map[string]string{
		"./local/path": "not an object store URL",
		"S3://b/k":     "not an object store URL",
		"s3:///k":      "no bucket name",
		"obs://":       "no bucket name",
	} {
		if _, err := objurl.Parse(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("Parse(%q) error = %v, want one saying %q", in, err, wantErr)
		}
	}
	if objurl.Is("/tmp/s3://x") {
		t.Error("a local path holding s3:// taken as a URL")
	}
	if got := (objurl.URL{Bucket: "b", Key: "k/"}).String(); got != "s3://b/k/" {
		t.Errorf("String = %q", got)
	}
}

func TestParseStrict(t *testing.T) {
	u, err := objurl.ParseStrict("obs://my-bucket.1/new/code/")
	if err != nil || u != (objurl.URL{Bucket: "my-bucket.1", Key: "new/code/"}) {
		t.Fatalf("ParseStrict = %v, %v", u, err)
	}
	for in, wantErr := range map[string]string{
		"http://b/k":          "not an object store URL",
		"s3://b/k":            "bucket name \"b\" is not valid",
		"s3://My_Bucket/k":    "is not valid",
		"s3://a..b/k":         "is not valid",
		"s3://bucket/a/../b/": `may not contain a ".." segment`,
	} {
		if _, err := objurl.ParseStrict(in); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("ParseStrict(%q) error = %v, want one saying %q", in, err, wantErr)
		}
	}
}
