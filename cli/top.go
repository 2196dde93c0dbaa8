package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/malocal/malocal/api"
)

func newJobTopCmd(g *globals) *cobra.Command {
	var once bool
	var every time.Duration
	cmd := &cobra.Command{
		Use:   "top JOB",
		Short: "Show the latest resource usage of every task of a job, refreshing (-o json: once)",
		Example: `  malocal job top job-20260102-030405-ab12
  malocal job top JOB -o json | jq '.[] | {task, cpu, memory}'`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if every < 500*time.Millisecond {
				return api.Invalidf("--interval %s: use at least 500ms", every)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			clear := isTerminal(out)
			for {
				j, err := c.Job(ctx, args[0])
				if err != nil {
					return err
				}
				m, err := c.JobMetrics(ctx, args[0], time.Time{})
				if err != nil {
					return err
				}
				latest := m.Latest()
				if g.output == "json" {
					if latest == nil {
						latest = []api.MetricSample{}
					}
					return g.printData(out, latest, nil, nil)
				}
				if clear {
					fmt.Fprint(out, "\033[H\033[2J")
				}
				fmt.Fprintf(out, "%s  %s  %s  (%s)\n\n", j.ID, j.Spec.Name, j.Status, time.Now().Format("15:04:05"))
				if m.Unavailable != "" {
					fmt.Fprintln(out, m.Unavailable)
				} else if err := g.printData(out, latest, topHeader, topRows(latest, time.Duration(m.Interval))); err != nil {
					return err
				}
				if once || j.Status.Final() {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(every):
				}
			}
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "print once and exit")
	cmd.Flags().DurationVar(&every, "interval", 3*time.Second, "refresh every this long")
	return cmd
}

var topHeader = []string{"TASK", "CPU", "CPU%", "MEMORY", "MEM%", "NET IN", "NET OUT", "GPU", "SAMPLED"}

// topRows is one row per task: "-" for a task without a recent sample.
func topRows(latest []api.MetricSample, interval time.Duration) [][]string {
	var rows [][]string
	for _, s := range latest {
		if s.Time.IsZero() {
			rows = append(rows, []string{strconv.Itoa(s.Task), "-", "-", "-", "-", "-", "-", "-", "no sample yet"})
			continue
		}
		mem, memPct := humanBytes(s.Memory), "-"
		if s.MemoryLimit > 0 {
			mem += " / " + humanBytes(s.MemoryLimit)
			memPct = fmt.Sprintf("%.0f%%", 100*float64(s.Memory)/float64(s.MemoryLimit))
		}
		cpu, cpuPct := fmt.Sprintf("%.2f", s.CPU), "-"
		if s.CPULimit > 0 {
			cpu += fmt.Sprintf(" / %g", s.CPULimit)
			cpuPct = fmt.Sprintf("%.0f%%", s.CPUPercent())
		}
		gpu := "-"
		if len(s.GPUs) > 0 {
			var parts []string
			for _, g := range s.GPUs {
				parts = append(parts, fmt.Sprintf("%d:%.0f%% %s", g.Index, g.Util, humanBytes(g.Memory)))
			}
			gpu = strings.Join(parts, " ")
		}
		age := time.Since(s.Time).Round(time.Second)
		when := s.Time.Local().Format("15:04:05")
		if age > 3*interval {
			when += fmt.Sprintf(" (%s ago)", age)
		}
		rows = append(rows, []string{strconv.Itoa(s.Task), cpu, cpuPct, mem, memPct, humanBytes(s.NetRx), humanBytes(s.NetTx), gpu, when})
	}
	return rows
}
