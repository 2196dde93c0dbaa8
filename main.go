// Command malocal emulates ModelArts custom-image training on one machine:
// a registry, an object store, an image auditor and a job runner.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/malocal/malocal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Execute(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
