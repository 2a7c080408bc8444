package main

import (
	"os"

	"github.com/spf13/cobra"

	"github.com/otas/otas-sniff/internal/config"
)

func newConfigCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "config [COMMAND]",
		Short: "Print the effective configuration (secrets masked) and where each setting came from",
		Long: `config prints every setting of a command (the live capture when none is named)
after flags, OTAS_SNIFF_<FLAG> environment variables and the --config file are
applied, with the source of each. Secrets are masked.`,
		Example: `  otas-sniff config
  OTAS_SNIFF_PORT=8000 otas-sniff config --config /etc/otas-sniff.yaml
  otas-sniff config replay`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target := cmd.Root()
			if len(args) == 1 {
				c, _, err := cmd.Root().Find(args)
				if err != nil || c == cmd.Root() {
					return usageErrorf("no command %q: try replay", args[0])
				}
				target = c
			}
			fs := target.Flags()
			fs.AddFlagSet(target.InheritedFlags())
			// The --config given to this command names the file for the target too.
			file := config.File(cmd.Flags(), os.Getenv)
			if err := config.ApplyShared(fs, file, os.Getenv, anyCommandFlag(cmd.Root())); err != nil {
				return withCode(exitUsage, err)
			}
			return config.WriteTable(cmd.OutOrStdout(), config.Effective(fs, config.SecretName))
		},
	}
}
