package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/malocal/malocal/api"
	"github.com/malocal/malocal/emulator"
)

// dataDirPath returns --data-dir or the default.
func (g *globals) dataDirPath() (string, error) {
	if g.dataDir != "" {
		return g.dataDir, nil
	}
	return emulator.DefaultDataDir()
}

// openDataDir opens an existing data dir for client commands.
func (g *globals) openDataDir() (*emulator.DataDir, error) {
	p, err := g.dataDirPath()
	if err != nil {
		return nil, err
	}
	return emulator.OpenDataDir(p)
}

// client returns an API client for the running emulator: --api (or
// MALOCAL_API) when given, else the address the emulator recorded in the
// data dir. The token comes from MALOCAL_TOKEN or the data dir.
func (g *globals) client() (*api.Client, error) {
	token := os.Getenv("MALOCAL_TOKEN")
	addr := g.apiAddr
	if token == "" || addr == "" {
		dd, err := g.openDataDir()
		if err != nil {
			if addr != "" {
				return nil, fmt.Errorf("no API token: set MALOCAL_TOKEN or pass the emulator's --data-dir: %w", err)
			}
			return nil, err
		}
		if token == "" {
			if token, err = dd.Token(); err != nil {
				return nil, err
			}
		}
		if addr == "" {
			rt, err := dd.Running()
			if err != nil {
				if errors.Is(err, emulator.ErrNotRunning) {
					return nil, &exitError{code: 2, err: err}
				}
				return nil, err
			}
			addr = rt.API
		}
	}
	return api.NewClient(addr, token), nil
}
