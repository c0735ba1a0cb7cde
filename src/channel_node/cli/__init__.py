"""The `channel-node` command line: `main` builds the parser from the command modules (`channels`,
`wallet`, `operator`), which take `run_async` from `support` and never import `main`."""
