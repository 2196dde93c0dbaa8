"""A moxing-compatible module for malocal jobs: `import moxing as mox`, then
mox.file.copy_parallel, copy, exists, list_directory, make_dirs, remove, …
on s3:// and obs:// URLs and local paths."""

from moxing import file  # noqa: F401

__all__ = ["file"]
