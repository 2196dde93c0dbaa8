#!/bin/bash
# run_train.sh: starts a training command the way the platform does.
#
#   bash /home/work/run_train.sh COMMAND [ARG...]
#
# 1. Prints user, pwd, app_url, log file and command.
# 2. Downloads the code dir DLS_APP_URL (s3:// or obs://) into
#    $MALOCAL_HOME/user-job-dir/<last path element>/.
# 3. Runs COMMAND with PYTHONPATH=<user-job-dir>:<toolkit>:$PYTHONPATH and
#    PYTHONUNBUFFERED=1, its output going both to stdout and to the log file
#    $MALOCAL_LOG_DIR/dls-task-$DLS_TASK_INDEX.log.
# 4. Uploads the log file to DLS_LOG_URL (an s3:// or obs:// dir) as
#    dls-task-$DLS_TASK_INDEX.log, when DLS_LOG_URL is set.
#
# Exit status: 127 when the code download fails (the downloader's error is
# printed), else the command's own exit status. SIGTERM and SIGINT are passed
# on to the command.
#
# Environment:
#   DLS_APP_URL       the code dir; empty: nothing is downloaded
#   DLS_TASK_INDEX    this task's index (default 0)
#   DLS_LOG_URL       the log dir; empty: the log is not uploaded
#   MALOCAL_HOME      the toolkit root (default /home/work)
#   MALOCAL_LOG_DIR   where the log file is written (default /tmp)
#   AWS_ENDPOINT_URL or S3_ENDPOINT, AWS_ACCESS_KEY_ID,
#   AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION: the object store

set -u

WORK_HOME="${MALOCAL_HOME:-/home/work}"
JOB_DIR="$WORK_HOME/user-job-dir"
TASK_INDEX="${DLS_TASK_INDEX:-0}"
LOG_FILE="${MALOCAL_LOG_DIR:-/tmp}/dls-task-${TASK_INDEX}.log"
APP_URL="${DLS_APP_URL:-}"
LOG_URL="${DLS_LOG_URL:-}"

if ! : >"$LOG_FILE" 2>/dev/null; then
	echo "run_train.sh: cannot write $LOG_FILE; logging to stdout only" >&2
	LOG_FILE=/dev/null
fi

say() {
	printf '%s\n' "$*" | tee -a "$LOG_FILE"
}

# toolkit runs a helper module with only the toolkit on its path, so that
# nothing in the user's code dir can shadow it.
toolkit() {
	PYTHONPATH="$WORK_HOME" python3 -s -m "$@"
}

upload_log() {
	if [ -n "$LOG_URL" ] && [ "$LOG_FILE" != /dev/null ]; then
		# Printed to stdout only: the log is already uploaded.
		if ! toolkit malocal_toolkit.upload_log "$LOG_FILE" "$LOG_URL"; then
			echo "run_train.sh: log upload to $LOG_URL failed" >&2
		fi
	fi
}

say "user: $(id -un 2>/dev/null || echo '?') (uid=$(id -u) gid=$(id -g))"
say "pwd: $(pwd)"
say "app_url: ${APP_URL:-(none)}"
say "log_file: $LOG_FILE"
cmdline="$(printf '%q ' "$@")"
say "command: ${cmdline% }"

if [ -n "$APP_URL" ]; then
	name="${APP_URL%/}"
	name="${name##*/}"
	case "$name" in
	"" | . | .. | *:)
		say "run_train.sh: cannot name a directory after app_url $APP_URL"
		upload_log
		exit 127
		;;
	esac
	dest="$JOB_DIR/$name"
	say "downloading $APP_URL to $dest/"
	mkdir -p "$JOB_DIR" 2>&1 | tee -a "$LOG_FILE"
	toolkit malocal_toolkit.download "$APP_URL" "$dest" 2>&1 | tee -a "$LOG_FILE"
	if [ "${PIPESTATUS[0]}" -ne 0 ]; then
		say "run_train.sh: download of $APP_URL failed, exit 127"
		upload_log
		exit 127
	fi
fi

if [ "$#" -eq 0 ]; then
	say "run_train.sh: no command given"
	upload_log
	exit 2
fi

export PYTHONUNBUFFERED=1
export PYTHONPATH="$JOB_DIR:$WORK_HOME${PYTHONPATH:+:$PYTHONPATH}"

# The command runs in the background with its output through a fifo to tee,
# so that this shell (often PID 1) can pass signals on and still collect the
# exit status.
fifo_dir="$(mktemp -d "${TMPDIR:-/tmp}/run_train.XXXXXX")"
fifo="$fifo_dir/out"
mkfifo "$fifo"
tee -a "$LOG_FILE" <"$fifo" &
tee_pid=$!
"$@" <&0 >"$fifo" 2>&1 &
child=$!
trap 'kill -TERM "$child" 2>/dev/null' TERM INT HUP
while :; do
	wait "$child"
	rc=$?
	kill -0 "$child" 2>/dev/null || break
done
trap - TERM INT HUP
wait "$tee_pid"
rm -rf "$fifo_dir"

say "run_train.sh: command exited with status $rc"
upload_log
exit "$rc"
