// Package audit checks a container image against the platform's image rules
// (DESIGN.md 1.2) before a job first uses it:
//
//   - MA-BASE-001 the image is built on an official base: the base's
//     rootfs.diff_ids are an exact prefix of the image's;
//   - MA-BASE-002 every layer really hashes to its diff_id;
//   - MA-BASE-003 the base is current, not a superseded build;
//   - MA-MAL-001 no signature of malicious code in any added layer, even in
//     files a later layer deletes;
//   - MA-PROT-001/002/003 base content under /bin /sbin /usr /lib /lib64, the
//     listed /etc files and the toolkit in /home/work is not modified,
//     deleted, or turned into another type;
//   - MA-SUID-001 no new root-owned setuid/setgid file, hardlink to one, or
//     file with capabilities;
//   - MA-SIZE-001 the image's uncompressed size is at most 9.5 GB;
//   - MA-LAYER-001 every layer parses as a well-formed, bounded tar stream.
//
// Layers are hostile input: they are streamed, never extracted, and every
// stream is bounded in bytes, entries and decompression ratio. Only the
// layers added on top of the base are read file by file; base layers are
// hashed, and their file index (needed to tell a modification from a new
// file) is built once per base and kept in memory by the Auditor.
//
//	a := audit.NewAuditor(audit.StaticCatalog{base}, cache)
//	rep, err := a.Audit(ctx, img, audit.Options{})
//	if err != nil { /* could not audit */ }
//	if rep.Verdict == audit.Fail { rep.WriteText(os.Stdout) }
//
// Verdicts are cached by manifest and config digest (BoltCache): an approved
// image is not audited again, a rejected one fails at once with its stored
// reasons, and Options.Force runs the audit again.
//
// Images come from the embedded registry (RegistryAuditor over an
// ImageSource such as (*registry.Registry).Image; its Audit method is the
// job manager's jobs.Auditor), from a docker-save tarball or OCI layout
// (FromTarball), or from the local Docker engine (FromDockerEngine).
// Reports are written as text, JSON or SARIF 2.1.0; `malocal image audit`
// is the command-line front end.
package audit
