"""The `proctor` command line: one subcommand per module under proctor.cli."""
