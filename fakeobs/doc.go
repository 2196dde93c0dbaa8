// Package fakeobs is malocal's object store: the S3 API (the stand-in for
// ModelArts' OBS) served by gofakes3 over a disk backend of our own.
//
// Objects are plain files under <root>/<bucket>/<key>, so users can look at
// them; metadata lives in sidecars under <root>/.meta. Writes stream to a
// temp file and are fsynced and renamed into place, so a failed or
// interrupted request leaves the previous object whole. Multipart parts are
// files too and survive a restart. Every request must carry an AWS
// Signature V4 made with the emulator's credentials.
//
//	svc, err := fakeobs.New(filepath.Join(dataDir, "objects"),
//		fakeobs.WithCredentials(fakeobs.Credentials{AccessKey: ak, SecretKey: sk}))
//	if err != nil { ... }
//	defer svc.Close()
//	http.Serve(listener, svc.Handler())
package fakeobs
