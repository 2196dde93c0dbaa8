package cli

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func newStatusCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show the running emulator's services, their addresses and readiness",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			st, err := c.Status(cmd.Context())
			if err != nil {
				return err
			}
			rows := [][]string{}
			for _, s := range st.Services {
				rows = append(rows, []string{s.Name, s.URL, strconv.FormatBool(s.Ready), s.Message})
			}
			if g.output == "table" {
				cmd.Printf("malocal %s, pid %d, up %s, data dir %s\n\n", st.Version, st.PID,
					time.Since(st.Started).Round(time.Second), st.DataDir)
			}
			return g.printData(cmd.OutOrStdout(), st, []string{"SERVICE", "URL", "READY", "NOTE"}, rows)
		},
	}
}
