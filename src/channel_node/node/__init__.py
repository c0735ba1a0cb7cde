"""The only place that joins the edges (docs/design.md, "Layers"): the runtime (core + store + chain
view), the operator's operations, settlement, signer recovery and the assembly of a node from its
settings. Nothing below this package imports it."""
