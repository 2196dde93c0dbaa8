package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/malocal/malocal/api"
)

func newJobCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "job", Short: "Submit, watch and manage training jobs"}
	cmd.AddCommand(newJobSubmitCmd(g), newJobListCmd(g), newJobDescribeCmd(g), newJobLogsCmd(g), newJobStopCmd(g), newJobDeleteCmd(g),
		newJobTopCmd(g))
	return cmd
}

func newJobSubmitCmd(g *globals) *cobra.Command {
	var (
		spec         api.JobSpec
		file, memory string
		env          []string
		timeout      time.Duration
		follow, wait bool
	)
	cmd := &cobra.Command{
		Use:   "submit [flags] -- RUN COMMAND...",
		Short: "Submit a training job",
		Long: `Submit a training job to the running emulator, from flags or from a YAML
(or JSON) file whose fields are the API's; flags given with -f override the
file. A job.yaml with every field:

` + JobYAMLExample + `
Only name, image, command and app_url are required. Numbers are checked as
the API checks them: nodes 1 to 64, retries 0 to 10, port 1 to 65535,
memory at least 6m, cpus, gpus and timeout not negative.`,
		Example: `  malocal job submit --name mnist --image eiwizard/my-train:1.0 --nodes 2 \
    --app-url s3://demo/new/ --data-url s3://demo/new/mnist_data/ --train-url s3://demo/out/ \
    -- bash /home/work/run_train.sh python /home/work/user-job-dir/new/mnist/train.py
  malocal job submit -f job.yaml --follow`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				fromFile, err := parseJobFile(b)
				if err != nil {
					return fmt.Errorf("%s: %w", file, err)
				}
				// Flags given on the command line win over the file.
				mergeSpec(cmd, &fromFile, spec)
				spec = fromFile
			}
			if len(args) > 0 {
				spec.Command = args
			}
			if memory != "" {
				m, err := api.ParseByteSize(memory)
				if err != nil {
					return api.Invalidf("--memory: %v", err)
				}
				spec.Flavor.Memory = m
			}
			if cmd.Flags().Changed("timeout") {
				spec.Timeout = api.Duration(timeout)
			}
			for _, kv := range env {
				k, v, ok := strings.Cut(kv, "=")
				if !ok {
					return api.Invalidf("--env %q: want KEY=VALUE", kv)
				}
				if spec.Env == nil {
					spec.Env = map[string]string{}
				}
				spec.Env[k] = v
			}
			fromFlags := cmd.Flags().Changed
			if file == "" {
				fromFlags = func(string) bool { return true }
			}
			if err := checkSpec(spec, fromFlags); err != nil {
				return err
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.SubmitJob(cmd.Context(), spec)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "submitted %s (%s, %d nodes)\n", j.ID, j.Spec.Name, j.Spec.Nodes)
			if !follow && !wait {
				return g.printData(cmd.OutOrStdout(), j, []string{"ID"}, [][]string{{j.ID}})
			}
			return watchJob(cmd.Context(), c, j.ID, follow, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVarP(&file, "file", "f", "", "read the job from a YAML or JSON file (flags override it)")
	f.StringVar(&spec.Name, "name", "", "job name")
	f.StringVar(&spec.Description, "description", "", "free text shown in the job list and on the job's page")
	f.StringVar(&spec.Image, "image", "", "image in malocal's registry, e.g. eiwizard/my-train:1.0")
	f.IntVar(&spec.Nodes, "nodes", 1, "number of nodes (containers), 1 to 64")
	f.StringVar(&spec.AppURL, "app-url", "", "code dir in the object store (s3:// or obs://)")
	f.StringVar(&spec.DataURL, "data-url", "", "data dir (DLS_DATA_URL)")
	f.StringVar(&spec.TrainURL, "train-url", "", "output dir (DLS_TRAIN_URL)")
	f.StringVar(&spec.LogURL, "log-url", "", "log dir: run_train.sh uploads each task's log there")
	f.StringArrayVar(&env, "env", nil, "extra environment variable KEY=VALUE (repeatable)")
	f.Float64Var(&spec.Flavor.CPUs, "cpus", 0, "CPUs per node (0: no limit)")
	f.StringVar(&memory, "memory", "", "memory per node, e.g. 4g (empty: no limit)")
	f.IntVar(&spec.Flavor.GPUs, "gpus", 0, "GPUs per node")
	f.DurationVar(&timeout, "timeout", 0, "time limit, e.g. 2h (0: none)")
	f.StringVar(&spec.Policy, "policy", "all", "success policy: all (every task must succeed) or index0 (task 0 decides)")
	f.IntVar(&spec.Retries, "retries", 0, "restart a failed job up to this many times, 0 to 10")
	f.IntVar(&spec.Port, "port", api.DefaultPort, "port named in every BATCH_CUSTOM{i}_HOSTS")
	f.BoolVar(&spec.Keep, "keep", false, "keep the containers and network after the job, for debugging")
	f.BoolVar(&follow, "follow", false, "stream the logs until the job ends, and exit with its result")
	f.BoolVar(&wait, "wait", false, "wait until the job ends, and exit with its result")
	return cmd
}

// JobYAMLExample is a job file with every field, as `job submit --help`
// and the README show it (a test submits it).
const JobYAMLExample = `  name: mnist
  image: demo/mnist:1.0              # in malocal's registry
  command: [bash, /home/work/run_train.sh, python,
            /home/work/user-job-dir/new/mnist/mnist_softmax.py,
            --data_url, /home/work/user-job-dir/new/mnist_data]
  app_url: s3://malocal-demo/new/    # code dir, downloaded to /home/work/user-job-dir/new/
  data_url: s3://malocal-demo/new/mnist_data/   # DLS_DATA_URL
  train_url: s3://malocal-demo/output/          # DLS_TRAIN_URL
  log_url: s3://malocal-demo/logs/   # optional: each task's log is uploaded here
  nodes: 1                           # 1 to 64
  flavor: {cpus: 1, memory: 1g, gpus: 0}
  env: {EPOCHS: "1"}
  timeout: 30m                       # 0: none
  policy: all                        # or index0: task 0 decides
  retries: 0                         # 0 to 10
  port: 2222                         # in every BATCH_CUSTOM{i}_HOSTS
  keep: false                        # true: keep the containers afterwards
`

// parseJobFile reads YAML (or JSON, which is YAML) with the API's field
// names: YAML to generic values, then JSON, so there is one schema.
func parseJobFile(b []byte) (api.JobSpec, error) {
	var spec api.JobSpec
	var generic map[string]any
	if err := yaml.Unmarshal(b, &generic); err != nil {
		return spec, err
	}
	j, err := json.Marshal(generic)
	if err != nil {
		return spec, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&spec); err != nil {
		return spec, api.Invalidf("%v (fields: name, description, image, command, nodes, app_url, data_url, train_url, log_url, env, flavor{cpus,memory,gpus}, timeout, policy, retries, port, keep; see `malocal job submit --help`)", err)
	}
	// Omitted numbers take the defaults the flags have.
	if _, ok := generic["nodes"]; !ok {
		spec.Nodes = 1
	}
	if _, ok := generic["port"]; !ok {
		spec.Port = api.DefaultPort
	}
	return spec, nil
}

// mergeSpec copies the flags the user set onto the spec read from a file.
func mergeSpec(cmd *cobra.Command, dst *api.JobSpec, flags api.JobSpec) {
	set := cmd.Flags().Changed
	if set("name") {
		dst.Name = flags.Name
	}
	if set("description") {
		dst.Description = flags.Description
	}
	if set("image") {
		dst.Image = flags.Image
	}
	if set("nodes") {
		dst.Nodes = flags.Nodes
	}
	if set("app-url") {
		dst.AppURL = flags.AppURL
	}
	if set("data-url") {
		dst.DataURL = flags.DataURL
	}
	if set("train-url") {
		dst.TrainURL = flags.TrainURL
	}
	if set("log-url") {
		dst.LogURL = flags.LogURL
	}
	if set("cpus") {
		dst.Flavor.CPUs = flags.Flavor.CPUs
	}
	if set("gpus") {
		dst.Flavor.GPUs = flags.Flavor.GPUs
	}
	if set("policy") {
		dst.Policy = flags.Policy
	}
	if set("retries") {
		dst.Retries = flags.Retries
	}
	if set("port") {
		dst.Port = flags.Port
	}
	if set("keep") {
		dst.Keep = flags.Keep
	}
}

// watchJob streams logs (with follow) or waits, then returns an exitError
// carrying the job's result: 0 completed, the failing task's code, 124 on
// timeout.
func watchJob(ctx context.Context, c *api.Client, id string, follow bool, out, errw io.Writer) error {
	if follow {
		err := c.JobLogs(ctx, id, -1, true, func(l api.LogLine) error {
			_, err := fmt.Fprintf(out, "[task %d] %s\n", l.Task, l.Text)
			return err
		})
		if err != nil && ctx.Err() == nil {
			return err
		}
	}
	for {
		j, err := c.Job(ctx, id)
		if err != nil {
			return err
		}
		if j.Status.Final() {
			fmt.Fprintf(errw, "job %s %s", j.ID, j.Status)
			if j.Reason != "" {
				fmt.Fprintf(errw, ": %s", j.Reason)
			}
			fmt.Fprintln(errw)
			return jobResult(j)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func jobResult(j *api.Job) error {
	code := api.JobExitCode(j)
	switch j.Status {
	case api.StatusCompleted:
		return nil
	case api.StatusTimeout:
		return &exitError{code: code, err: errors.New("the job reached its time limit")}
	case api.StatusAuditFailed:
		return &exitError{code: code, err: errors.New("the image failed the audit")}
	}
	return &exitError{code: code, err: fmt.Errorf("job %s", j.Status)}
}

func newJobListCmd(g *globals) *cobra.Command {
	var status, name string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List jobs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			js, err := c.Jobs(cmd.Context(), status, name)
			if err != nil {
				return err
			}
			rows := [][]string{}
			for _, j := range js {
				st := string(j.Status)
				if j.QueuePosition > 0 {
					st += " (#" + strconv.Itoa(j.QueuePosition) + " in queue)"
				}
				rows = append(rows, []string{j.ID, j.Spec.Name, st, strconv.Itoa(j.Spec.Nodes), j.Spec.Image, age(j.Created)})
			}
			return g.printData(cmd.OutOrStdout(), js, []string{"ID", "NAME", "STATUS", "NODES", "IMAGE", "AGE"}, rows)
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "only jobs with this status")
	cmd.Flags().StringVar(&name, "name", "", "only jobs whose name contains this")
	return cmd
}

func age(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return strconv.Itoa(int(d.Seconds())) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d.Minutes())) + "m"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d.Hours())) + "h"
	}
	return strconv.Itoa(int(d.Hours()/24)) + "d"
}

func newJobDescribeCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "describe JOB",
		Short: "Show a job: status, events, and per task its host, status, exit code and times",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.Job(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if g.output == "json" {
				return g.printData(cmd.OutOrStdout(), j, nil, nil)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "ID:       %s\nName:     %s\nStatus:   %s\n", j.ID, j.Spec.Name, j.Status)
			if j.Reason != "" {
				fmt.Fprintf(w, "Reason:   %s\n", j.Reason)
			}
			fmt.Fprintf(w, "Image:    %s (%s@%s)\nNodes:    %d\nPolicy:   %s\nCommand:  %s\n", j.Spec.Image, j.ImageRepo, j.ImageDigest, j.Spec.Nodes, j.Spec.Policy, strings.Join(j.Spec.Command, " "))
			for _, a := range j.Audit {
				fmt.Fprintf(w, "Audit:    %s\n", a)
			}
			fmt.Fprintln(w, "\nEvents:")
			for _, e := range j.Events {
				fmt.Fprintf(w, "  %s  %-12s %s\n", e.Time.Local().Format("15:04:05.000"), e.Status, e.Message)
			}
			fmt.Fprintln(w, "\nTasks:")
			rows := [][]string{}
			for _, t := range j.Tasks {
				code := "-"
				if t.ExitCode != nil {
					code = strconv.Itoa(*t.ExitCode)
				}
				rows = append(rows, []string{strconv.Itoa(t.Index), t.Host, t.Status, code, stamp(t.Started), stamp(t.Finished)})
			}
			return g.printData(w, j, []string{"TASK", "HOST", "STATUS", "EXIT", "STARTED", "FINISHED"}, rows)
		},
	}
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("15:04:05")
}

func newJobLogsCmd(g *globals) *cobra.Command {
	var follow bool
	var task int
	cmd := &cobra.Command{
		Use:   "logs JOB",
		Short: "Print a job's logs, all tasks with a [task i] prefix, or one with --task",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if task < -1 {
				return api.Invalidf("--task: a task index, 0 or more, got %d", task)
			}
			c, err := g.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			return c.JobLogs(cmd.Context(), args[0], task, follow, func(l api.LogLine) error {
				var err error
				if task >= 0 {
					_, err = fmt.Fprintln(out, l.Text)
				} else {
					_, err = fmt.Fprintf(out, "[task %d] %s\n", l.Task, l.Text)
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "follow until the job ends")
	cmd.Flags().IntVar(&task, "task", -1, "only this task's log")
	return cmd
}

func newJobStopCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "stop JOB",
		Short: "Stop a queued or running job (status canceled)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			j, err := c.StopJob(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "stopping %s\n", j.ID)
			return nil
		},
	}
}

func newJobDeleteCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "delete JOB",
		Short: "Delete a finished job and its logs",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			if err := c.DeleteJob(cmd.Context(), args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "deleted %s\n", args[0])
			return nil
		},
	}
}
