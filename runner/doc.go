// Package runner is `malocal run`: one call that runs a training script as
// the platform would and returns its result, for CI.
//
// Run starts a throwaway emulator on a temporary data dir with free
// loopback ports (or uses a running one, see Remote), uploads the code dir
// to s3://<bucket>/<run id>/<basename of the code dir>/ and the data dir to
// …/<run id>/data/, makes the image available in the emulator's registry
// (pushing it, and the official base it was built on, from the local
// Docker engine, or building the default base offline), submits the job,
// streams its logs with [task i] prefixes, downloads …/<run id>/output/
// (the job's DLS_TRAIN_URL), optionally writes a JUnit report, and tears
// everything down, also when ctx is canceled:
//
//	res, err := runner.Run(ctx, runner.Options{
//		Code: "./src", Image: "my-train:1.0", Nodes: 2, Output: "./out",
//		Command: []string{"bash", "/home/work/run_train.sh", "python3", "/home/work/user-job-dir/src/train.py"},
//		Stdout: os.Stdout, Stderr: os.Stderr,
//	})
//	os.Exit(res.ExitCode)
//
// Result.ExitCode follows `malocal job submit --follow`: 0 when the job
// completed, the failing task's exit code, 124 on timeout, 3 when the image
// failed the audit, and 130 when ctx was canceled (Ctrl-C).
package runner
