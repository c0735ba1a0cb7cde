"""Tooling for the embedded chain: the in-process chain (`devchain`), its loopback JSON-RPC bridge,
`channel-node dev` (`stack`) and the contract walk-through (`demo`)."""
