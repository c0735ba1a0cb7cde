"""The one entry point that reads a `PAYMENT-SIGNATURE` in any scheme (docs/protocol.md, "The
`exact` scheme (wire)"): the envelope first (`envelope.payment_scheme`), then `accepted.scheme`
picks the module that validates the payload, so an `exact` payment is never refused for lacking
a voucher's fields. A scheme outside `schemes` is `unsupported_scheme` (402) whatever its payload
holds; malformed input is `malformed_payment` (400). Pure: no I/O."""

from __future__ import annotations

from collections.abc import Collection

from channel_node.wire import channel, exact
from channel_node.wire.channel import Voucher
from channel_node.wire.envelope import (
    SIGNATURE_HEADER,
    UNSUPPORTED_SCHEME,
    ProtocolError,
    payment_scheme,
    read_payment_header,
)
from channel_node.wire.exact import ExactPayment

#: A parsed payment: a `channel` voucher or an `exact` authorization (tell them apart by type).
Payment = Voucher | ExactPayment

#: Every scheme this package can read.
SCHEMES: frozenset[str] = frozenset({channel.SCHEME, exact.SCHEME})


def parse_payment(header: str, schemes: Collection[str] = SCHEMES) -> Payment:
    """The payment in `header`, parsed by its scheme's module. `schemes`: the ones the caller takes
    (a node that does not offer `exact` passes just `channel`)."""
    document = read_payment_header(header, SIGNATURE_HEADER)
    scheme = payment_scheme(document)
    if scheme not in schemes or scheme not in SCHEMES:
        offered = ", ".join(sorted(set(schemes) & SCHEMES))
        raise ProtocolError(UNSUPPORTED_SCHEME, f"scheme must be one of: {offered}", 402)
    if scheme == exact.SCHEME:
        return exact.parse_exact_document(document)
    return channel.parse_voucher_document(document)


__all__ = ["SCHEMES", "Payment", "parse_payment"]
