// Package netguard hardens the emulator's HTTP listeners against a
// neighbour (another local user, or a job's container) that opens many
// connections or sends slowly:
//
//   - RaiseFileLimit lifts the process's soft RLIMIT_NOFILE to the hard one
//     at start, so the bounds below have room.
//
//   - A Budget shares the file descriptors that connections may hold across
//     all listeners and keeps a reserve for files; each listener also has
//     its own cap (Budget.PerListener), so a flood on one cannot starve the
//     others.
//
//   - Listen wraps a listener so that, at either bound, a connection that
//     waits for a request is closed to make room, and if all are busy the
//     new one is closed at accept: the client sees its connection end at
//     once instead of hanging in the backlog.
//
//   - NewServer sets header, idle and body-progress timeouts: a client that
//     sends headers or a body a byte at a time is cut off, and a kept-alive
//     connection that sends nothing is closed after the idle timeout.
//
// Put together:
//
//	budget := netguard.NewBudget(netguard.DefaultReserve)
//	ln, _ := net.Listen("tcp", "127.0.0.1:0")
//	srv := netguard.NewServer(handler, netguard.Limits{})
//	go netguard.Serve(srv, budget.Listen(ln, "s3", budget.PerListener(), logger))
package netguard
