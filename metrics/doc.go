// Package metrics keeps the resource usage of a job's tasks: a bounded
// series per job in the data dir (long jobs are downsampled), live
// subscribers for the console's websocket, and a sampler that reads the
// Docker engine's stats of each task's container.
//
//	st, _ := metrics.Open(filepath.Join(dataDir, "metrics"))
//	smp, _ := metrics.NewDockerSampler(st)
//	go smp.TaskStarted(ctx, jobID, 0, containerID) // returns when ctx ends
//	m, _ := st.Get(jobID, time.Time{})
package metrics
