package jobs

import (
	"regexp"
	"strings"

	"github.com/malocal/malocal/internal/objurl"
)

// MaxNodes bounds a job's node count.
const MaxNodes = 64

var (
	envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// reservedEnv are set by the platform; users may not override them.
var reservedEnv = []string{"DLS_", "BATCH_", "MA_", "VC_", "AWS_ENDPOINT_URL", "S3_ENDPOINT", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "NVIDIA_VISIBLE_DEVICES"}

// Normalize fills defaults into a spec and validates it. Each error names
// the field and what is allowed.
func Normalize(s *Spec) error {
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" {
		return Invalidf("name: required (letters, digits and dashes)")
	}
	if len(s.Name) > 64 {
		return Invalidf("name: at most 64 characters, got %d", len(s.Name))
	}
	if len(s.Description) > 1024 {
		return Invalidf("description: at most 1024 characters, got %d", len(s.Description))
	}
	if strings.TrimSpace(s.Image) == "" {
		return Invalidf("image: required, a repository in malocal's registry such as eiwizard/my-train:1.0")
	}
	if len(s.Command) == 0 || strings.TrimSpace(strings.Join(s.Command, "")) == "" {
		return Invalidf("command: required, for example: bash /home/work/run_train.sh python /home/work/user-job-dir/<app>/train.py")
	}
	if s.Nodes == 0 {
		s.Nodes = 1
	}
	if s.Nodes < 1 || s.Nodes > MaxNodes {
		return Invalidf("nodes: must be between 1 and %d, got %d", MaxNodes, s.Nodes)
	}
	if s.AppURL == "" {
		return Invalidf("app_url: required, the code dir in the object store, such as s3://bucket/new/")
	}
	for _, f := range []struct {
		name string
		val  *string
	}{{"app_url", &s.AppURL}, {"data_url", &s.DataURL}, {"train_url", &s.TrainURL}, {"log_url", &s.LogURL}} {
		if *f.val == "" {
			continue
		}
		if _, _, err := ParseObjectURL(*f.val); err != nil {
			return Invalidf("%s: %v", f.name, err)
		}
	}
	for k := range s.Env {
		if !envName.MatchString(k) {
			return Invalidf("env: %q is not a valid variable name", k)
		}
		for _, r := range reservedEnv {
			if strings.HasPrefix(k, r) {
				return Invalidf("env: %s is set by the platform and cannot be overridden", k)
			}
		}
	}
	if s.Flavor.CPUs < 0 || s.Flavor.Memory < 0 || s.Flavor.GPUs < 0 {
		return Invalidf("flavor: cpus, memory and gpus must not be negative")
	}
	if s.Flavor.Memory != 0 && s.Flavor.Memory < 6<<20 {
		return Invalidf("flavor.memory: at least 6m (Docker's minimum), got %d bytes", s.Flavor.Memory)
	}
	if s.Timeout < 0 {
		return Invalidf("timeout: must not be negative")
	}
	switch s.Policy {
	case "":
		s.Policy = PolicyAll
	case PolicyAll, PolicyIndex0:
	default:
		return Invalidf("policy: %q is not one of all, index0", s.Policy)
	}
	if s.Retries < 0 || s.Retries > 10 {
		return Invalidf("retries: must be between 0 and 10, got %d", s.Retries)
	}
	if s.Port == 0 {
		s.Port = DefaultPort
	}
	if s.Port < 1 || s.Port > 65535 {
		return Invalidf("port: must be between 1 and 65535, got %d", s.Port)
	}
	return nil
}

// ParseObjectURL splits s3://bucket/key or obs://bucket/key.
func ParseObjectURL(u string) (bucket, key string, err error) {
	ou, err := objurl.ParseStrict(u)
	return ou.Bucket, ou.Key, err
}
