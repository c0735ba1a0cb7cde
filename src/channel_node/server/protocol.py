"""The node's side of the x402 transport (docs/design.md, "The HTTP transport"): its fixed terms
(`Offer`) and its channel state rendered into the `PAYMENT-REQUIRED` offer and the
`PAYMENT-RESPONSE` receipt. The envelope itself (header names, encoding, the documents' fields,
parsing `PAYMENT-SIGNATURE`) is `wire/`, which the wallet speaks too. Pure: no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from channel_node.core import ChannelState
from channel_node.core.spending import Cap, Pass, Progress
from channel_node.wire import envelope
from channel_node.wire.channel import (
    CAP_FIELD,
    CHARGE_FIELD,
    PASS_FIELD,
    PASSES_FIELD,
    SCHEME,
    CapStanding,
    CapTerms,
    ChannelAccepts,
    ChannelExtra,
    ChannelReceipt,
    ChannelSummary,
    PassStanding,
    PassTerms,
    checksum,
)
from channel_node.wire.envelope import X402_VERSION, PaymentRequired, ResourceInfo
from channel_node.wire.exact import ExactAccepts


def channel_summary(state: ChannelState) -> ChannelSummary:
    """What a client needs to resync: the channel's figures and the last voucher the node holds."""
    return {
        "channelId": "0x" + state.channel_id.hex(),
        "deposited": str(state.deposited),
        "claimed": str(state.claimed),
        "charged": str(state.charged),
        "maxClaimableAmount": str(state.ceiling),
        "signature": "0x" + state.signature.hex() if state.signature else None,
        "closeDeadline": state.close_deadline,
        "settled": state.settled,
    }


@dataclass(frozen=True)
class Offer:
    """The node's fixed terms, rendered into every 402."""

    network: str  # "eip155:<chainId>"
    asset: str  # checksum address, zero address for native ETH
    pay_to: str
    contract: str
    min_deposit: int
    close_delay_min: int
    close_delay_max: int
    max_timeout_seconds: int = 60
    # The address channels must name as receiverAuthorizer for this node to settle them: its claim
    # key, when that is not the receiver itself (docs/protocol.md); the zero address otherwise.
    receiver_authorizer: str = "0x" + "00" * 20


def payment_required(
    offer: Offer,
    url: str,
    price: int,
    description: str,
    mime_type: str,
    once: bool,
    error: str,
    message: str,
    state: ChannelState | None = None,
    exact: ExactAccepts | None = None,
    cap: CapTerms | None = None,
    passes: list[PassTerms] | None = None,
    charge: int | None = None,
) -> PaymentRequired:
    """The 402 document: the `channel` entry, then the `exact` entry when the price offers it.
    `price` is what the read costs (the channel's effective price when the node knows it); `cap`
    and `passes` go into the channel entry's `extra`, and `charge`, what the read costs the channel
    whose voucher the node checked, when known (docs/protocol.md, "Caps and passes")."""
    extra: ChannelExtra = {
        "contract": offer.contract,
        "minDeposit": str(offer.min_deposit),
        "closeDelay": {"min": offer.close_delay_min, "max": offer.close_delay_max},
        "receiverAuthorizer": offer.receiver_authorizer,
        "once": once,
    }
    if state is not None:
        extra["channel"] = channel_summary(state)
    if cap is not None:
        extra[CAP_FIELD] = cap
    if passes:
        extra[PASSES_FIELD] = passes
    if charge is not None:
        extra[CHARGE_FIELD] = str(charge)
    accepts: ChannelAccepts = {
        "scheme": SCHEME,
        "network": offer.network,
        "amount": str(price),
        "asset": offer.asset,
        "payTo": offer.pay_to,
        "maxTimeoutSeconds": offer.max_timeout_seconds,
        "extra": extra,
    }
    resource: ResourceInfo = {"url": url, "description": description, "mimeType": mime_type}
    entries: list[ChannelAccepts | ExactAccepts] = [accepts]
    if exact is not None:
        entries.append(exact)
    return envelope.payment_required(error, message, resource, list(entries))


def cap_terms(cap: Cap, period_ends_at: int | None, standing: Progress | None = None) -> CapTerms:
    """The offer's `extra.cap`; with the channel's `standing` when the request's voucher was checked."""
    terms: CapTerms = {"name": cap.name, "cap": str(cap.amount), "period": cap.period.text}
    if period_ends_at is not None:
        terms["periodEndsAt"] = period_ends_at
    if standing is not None:
        terms["paid"] = str(standing.paid)
        terms["resetsAt"] = standing.resets_at
    return terms


def pass_terms(passes: tuple[Pass, ...]) -> list[PassTerms]:
    """The offer's `extra.passes`: the passes on sale that cover the resource."""
    return [{"name": p.name, "price": str(p.price), "duration": p.duration, "description": p.description} for p in passes]


def cap_standing(standing: Progress) -> CapStanding:
    """The receipt's `cap`: the channel against its cap after the request."""
    cap = standing.cap
    return {"name": cap.name, "cap": str(cap.amount), "paid": str(standing.paid), "resetsAt": standing.resets_at}


def payment_response(
    offer: Offer, state: ChannelState, charged: int, payment_id: str | None, voucher_amount: int | None = None,
    cap: CapStanding | None = None, held: PassStanding | None = None,
) -> ChannelReceipt:
    """The receipt. When the request's voucher is below the node's best one (a wallet that lost
    track, say, after restoring a backup), it also carries that best voucher so the wallet can
    check it is its own and catch up, instead of taking the figures on trust."""
    receipt: ChannelReceipt = {
        "x402Version": X402_VERSION,
        "success": True,
        "scheme": SCHEME,
        "network": offer.network,
        "payer": checksum(state.config.payer),
        "channelId": "0x" + state.channel_id.hex(),
        "chargedAmount": str(charged),
        "chargedTotal": str(state.charged),
        "maxClaimableAmount": str(state.ceiling),
        "deposited": str(state.deposited),
        "remaining": str(state.deposited - state.charged),
        "paymentId": payment_id,
    }
    if voucher_amount is not None and voucher_amount < state.ceiling and state.signature:
        receipt["lastVoucher"] = {"maxClaimableAmount": str(state.ceiling), "signature": "0x" + state.signature.hex()}
    if cap is not None:
        receipt[CAP_FIELD] = cap
    if held is not None:
        receipt[PASS_FIELD] = held
    return receipt
