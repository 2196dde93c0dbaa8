// Package baseimage builds and publishes malocal's official base images and
// carries the platform toolkit that every job starts with.
//
// A base is a source image with one toolkit layer on top:
//   - the user work (uid and gid 1101, home /home/work) appended to the
//     base's /etc/passwd, /etc/group and /etc/shadow, /home/work and /cache
//     owned by work;
//   - the toolkit in /home/work: run_train.sh, malocal_toolkit/ (a SigV4
//     S3 client, the parallel code-dir downloader, the log uploader) and
//     moxing/ (`import moxing as mox`), all bash and python3's standard
//     library, embedded in the binary (see Toolkit);
//   - a config with USER work, WORKDIR /home/work, PATH, PYTHONPATH and the
//     org.malocal.base.* labels.
//
// The layer is deterministic (fixed times, sorted entries), so building the
// same source twice gives the same digest.
//
// Sources (see Open): docker:REF (docker save), debian:SUITE (mmdebstrap
// with the host's apt sources), an OCI layout, docker save output, or a root
// filesystem tarball. Build pushes the result to the registry and records
// it in the Catalog, the JSON list of builds (name, tag, digest, diff_ids,
// superseded) that the auditor reads:
//
//	cat := baseimage.OpenCatalog(dataDir)
//	res, err := baseimage.Build(ctx, baseimage.BuildOptions{
//		Name: "eiwizard/custom-cpu-base", Tag: "1.0",
//		From: "debian:bookworm", Include: []string{"python3-pip"},
//		Registry: "127.0.0.1:5000", Catalog: cat, Progress: os.Stdout,
//	})
//
// run_train.sh reads DLS_APP_URL, DLS_TASK_INDEX, DLS_LOG_URL (the log dir:
// the log is uploaded there as dls-task-<index>.log) and the AWS_* / S3_*
// object-store variables; MALOCAL_HOME (default /home/work) and
// MALOCAL_LOG_DIR (default /tmp) move it for tests on the host.
package baseimage
