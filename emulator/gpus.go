package emulator

import (
	"context"
	"os/exec"
	"regexp"
	"time"
)

var gpuLine = regexp.MustCompile(`(?m)^GPU (\d+):`)

// detectGPUs lists the host's GPU indexes from `nvidia-smi -L`; none when
// the tool is missing or fails.
func detectGPUs(ctx context.Context) []string {
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "-L").Output()
	if err != nil {
		return nil
	}
	return parseGPUList(string(out))
}

func parseGPUList(s string) []string {
	var ids []string
	for _, m := range gpuLine.FindAllStringSubmatch(s, -1) {
		ids = append(ids, m[1])
	}
	return ids
}
