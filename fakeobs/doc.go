// Package fakeobs is malocal's object store: the S3 API (the stand-in for
// ModelArts' OBS) served by gofakes3 over a disk backend of our own.
//
// Objects are plain files under <root>/<bucket>/<key>, so users can look at
// them; metadata lives in sidecars under <root>/.meta. A key segment too
// long for a file name (keys may be 1,024 bytes, names 255) is stored under
// a name made from its hash, and listed by the segment recorded for it in
// .meta (longseg.go). Writes stream to a
// temp file and are fsynced and renamed into place, so a failed or
// interrupted request leaves the previous object whole. Bodies of 1 MiB and
// more are written with direct I/O (direct.go): a machine that also builds
// images has its page cache full of dirty pages, and the kernel throttles
// every buffered writer there. Multipart parts are
// files too and survive a restart. Every request must carry an AWS
// Signature V4 made with the emulator's credentials, scoped to the store's
// region.
//
// Where gofakes3 and S3 or OBS differ, the package answers itself (see
// getobject.go and bucketapi.go): GET and HEAD with RFC 9110's conditional
// headers, lenient ranges and partNumber; ListObjects with EncodingType=url;
// ListBuckets paging; GetBucketLocation; "folder/" marker keys; a repeated
// CompleteMultipartUpload answered as the first; OBS's 100 KB minimum part
// and BucketAlreadyOwnedByYou; PUT with Transfer-Encoding: chunked. Parts of
// one size are written in place into one file and hashed beside the write,
// and an upload's part list is kept in memory, so completing is a rename.
//
//	svc, err := fakeobs.New(filepath.Join(dataDir, "objects"),
//		fakeobs.WithCredentials(fakeobs.Credentials{AccessKey: ak, SecretKey: sk}))
//	if err != nil { ... }
//	defer svc.Close()
//	http.Serve(listener, svc.Handler())
package fakeobs
