package cli

import (
	"fmt"
	"os/exec"
	"runtime"

	"github.com/spf13/cobra"
)

func newUICmd(g *globals) *cobra.Command {
	var open bool
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Print a one-time login link to the web console",
		Long: `Print a login link to the running emulator's web console. The link works
once: opening it signs the browser in with a cookie (HttpOnly, same site
only) and no secret stays in the page or the address bar. Run the command
again for another browser. With --open, the link is opened in the default
browser too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := g.client()
			if err != nil {
				return err
			}
			u, err := c.LoginURL(cmd.Context())
			if err != nil {
				return fmt.Errorf("asking the emulator for a login link: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), u)
			if open {
				if err := openBrowser(u); err != nil {
					return fmt.Errorf("opening a browser (open the link above by hand): %w", err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&open, "open", false, "open the link in the default browser")
	return cmd
}

// openBrowser hands url to the desktop's opener; it does not wait for
// the browser.
func openBrowser(url string) error {
	name := "xdg-open"
	if runtime.GOOS == "darwin" {
		name = "open"
	}
	cmd := exec.Command(name, url)
	if err := cmd.Start(); err != nil {
		return err
	}
	go cmd.Wait()
	return nil
}
