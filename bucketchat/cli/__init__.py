"""The command line: typer commands, one module per area, and the single error boundary."""
