// Package dockerbackend runs malocal's jobs as containers of the local
// Docker engine: one private bridge network per job, one container per
// task, GPUs handed out by device id, logs streamed into the core's task
// logs, and re-attach after an emulator restart. It speaks to the engine
// through the engine's own Go client (github.com/moby/moby/client), which
// negotiates the API version and honours DOCKER_HOST (unix, tcp with TLS,
// ssh) and Docker contexts. It implements jobs.Backend.
//
//	eng, _ := dockerbackend.Connect()
//	b := dockerbackend.New(dockerbackend.Config{Engine: eng, Gateways: gw, Registry: "127.0.0.1:7082"})
//	mgr, _ := jobs.NewManager(ctx, jobs.Config{Backend: b, ...})
package dockerbackend
