"""The x402 v2 HTTP envelope the node and the reader wallet both speak (docs/protocol.md section
12, "The wire package"): `envelope.py` holds what every scheme shares (the header names, the
base64-of-JSON encoding with its size bound and error codes, the field types, the offer document);
one module per scheme holds that scheme's payload, `accepts` entry and receipt (`channel.py` for
this node's `channel` scheme, `exact.py` for x402's `exact` scheme with EIP-3009 tokens). Pure: no
aiohttp, no store, no chain; it imports only `signing/` and `types.py` of ours, so `server/` and
`client/` can both depend on it and never on each other."""
