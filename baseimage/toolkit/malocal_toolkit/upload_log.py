"""Upload a job's log file to the log dir.

    python3 -m malocal_toolkit.upload_log /tmp/dls-task-0.log s3://bucket/logs/

The object is named after the file (LOG_DIR/dls-task-0.log). Exit status 0
on success, 1 with the reason on stderr.
"""

import os
import sys

from malocal_toolkit import s3


def upload_log(client, path, log_url):
    bucket, prefix = s3.parse_url(log_url)
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    key = prefix + os.path.basename(path)
    client.upload_file(path, bucket, key, content_type="text/plain; charset=utf-8")
    return "s3://%s/%s" % (bucket, key)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python3 -m malocal_toolkit.upload_log LOG_FILE s3://bucket/log/dir/",
              file=sys.stderr)
        return 2
    path, url = argv
    try:
        dest = upload_log(s3.Client(), path, url)
    except (s3.S3Error, ValueError, OSError) as e:
        print("log upload to %s failed: %s" % (url, e), file=sys.stderr)
        return 1
    print("uploaded log to %s" % dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
