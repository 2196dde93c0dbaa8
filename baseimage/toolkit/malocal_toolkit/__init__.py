"""The malocal platform toolkit: helpers used by run_train.sh.

s3        a SigV4 S3 client (standard library only)
download  the parallel code-dir downloader
upload_log  the log uploader
"""
