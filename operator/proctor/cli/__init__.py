"""The `proctor` command line: main.py assembles it, one module per subcommand."""
