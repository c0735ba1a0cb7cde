"""ChannelDeposit's logs: one frozen dataclass per event, and the decoder that builds them.

The decoder is built once from the committed ABI and checked against the dataclasses (a renamed
or added field fails at first use). It reads raw JSON-RPC hex as well as web3's formatted logs, so
a watcher can skip web3's result formatters (docs/design.md, "Layers"). It does not check the
emitter: callers filter by the contract's address.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from functools import cache, lru_cache
from typing import Any, ClassVar

from eth_abi.abi import decode as abi_decode
from eth_utils.address import to_canonical_address

from channel_node.chain.artifacts import canonical_type, channel_deposit_artifact
from channel_node.signing.eip712 import ZERO_ADDRESS, ChannelConfig, keccak256

# ------------------------------------------------------------------ log types


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelEventLog:
    """One decoded ChannelDeposit log; subclasses carry the event's own fields (snake_case)."""

    block_number: int
    log_index: int
    tx_hash: bytes

    event_name: ClassVar[str]


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelOpened(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelOpened"
    channel_id: bytes
    payer: str
    receiver: str
    signer: str
    token: str
    close_delay: int
    salt: int
    receiver_authorizer: str
    deposited: int

    @property
    def config(self) -> ChannelConfig:
        """The whole configuration travels in this event, so a watcher can rebuild the channel."""
        token = None if to_canonical_address(self.token) == ZERO_ADDRESS else self.token
        return ChannelConfig.create(
            self.payer, self.signer, self.receiver, token, self.close_delay, self.salt, self.receiver_authorizer
        )


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelDeposited(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelDeposited"
    channel_id: bytes
    amount: int
    total_deposited: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelClaimed(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelClaimed"
    channel_id: bytes
    total_claimed: int


@dataclass(frozen=True, kw_only=True, slots=True)
class CloseRequested(ChannelEventLog):
    event_name: ClassVar[str] = "CloseRequested"
    channel_id: bytes
    deadline: int


@dataclass(frozen=True, kw_only=True, slots=True)
class ChannelSettled(ChannelEventLog):
    event_name: ClassVar[str] = "ChannelSettled"
    channel_id: bytes
    total_claimed: int
    refunded: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PayoutDeferred(ChannelEventLog):
    event_name: ClassVar[str] = "PayoutDeferred"
    token: str
    account: str
    amount: int


@dataclass(frozen=True, kw_only=True, slots=True)
class PendingWithdrawn(ChannelEventLog):
    event_name: ClassVar[str] = "PendingWithdrawn"
    token: str
    account: str
    to: str
    amount: int


EVENT_TYPES: tuple[type[ChannelEventLog], ...] = (
    ChannelOpened,
    ChannelDeposited,
    ChannelClaimed,
    CloseRequested,
    ChannelSettled,
    PayoutDeferred,
    PendingWithdrawn,
)

# ------------------------------------------------------------------ decoding


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@lru_cache(maxsize=4096)
def _checksum(raw: bytes) -> str:
    """EIP-55 checksum of 20 address bytes with the fast keccak (eth-utils' is most of a decode's
    time); cached because the same payers, receivers and tokens recur in every log."""
    lower = raw.hex()
    digest = keccak256(lower.encode()).hex()
    # EIP-55: the 40 hex digits against the first 40 of the digest's 64 (strict=False: truncation is the rule).
    return "0x" + "".join(c.upper() if d in "89abcdef" else c for c, d in zip(lower, digest, strict=False))


def _word_decoder(abi_type: str) -> Callable[[bytes], Any] | None:
    """Decoder for one 32-byte word of a static type; None for types that need eth-abi."""
    if abi_type == "address":
        return lambda word: _checksum(word[12:])
    if abi_type.startswith("uint"):
        return lambda word: int.from_bytes(word, "big")
    if abi_type == "bool":
        return lambda word: word[-1] == 1
    if abi_type == "bytes32":
        return bytes
    return None


@dataclass(frozen=True, slots=True)
class _EventSpec:
    cls: type[ChannelEventLog]
    topic_fields: tuple[tuple[str, Any], ...]  # (field, word decoder) for topics[1:]
    data_fields: tuple[str, ...]
    data_types: tuple[str, ...]
    data_words: tuple[Any, ...] | None  # word decoders when every data field is static


@cache
def _event_specs() -> dict[bytes, _EventSpec]:
    """topic0 -> how to decode that event, built once from the committed ABI. Fails at first use if
    the ABI and the dataclasses above drift apart (a renamed or added field)."""
    by_name = {cls.event_name: cls for cls in EVENT_TYPES}
    specs = {}
    for entry in channel_deposit_artifact().abi:
        if entry["type"] != "event" or entry.get("anonymous"):
            continue
        cls = by_name.get(entry["name"])
        if cls is None:
            raise RuntimeError(f"ChannelDeposit event {entry['name']} has no dataclass in chain.logs")
        names = [_snake(i["name"]) for i in entry["inputs"]]
        own = [f.name for f in fields(cls) if f.name not in ("block_number", "log_index", "tx_hash")]
        if sorted(names) != sorted(own):
            raise RuntimeError(f"{cls.__name__} fields {own} do not match the ABI's {names}")
        types = [canonical_type(i) for i in entry["inputs"]]
        topic0 = keccak256(f"{entry['name']}({','.join(types)})".encode())
        indexed = [(n, _word_decoder(t)) for n, t, i in zip(names, types, entry["inputs"], strict=True) if i["indexed"]]
        if any(decoder is None for _, decoder in indexed):
            raise RuntimeError(f"{entry['name']}: indexed dynamic types are not supported")
        data = [(n, t) for n, t, i in zip(names, types, entry["inputs"], strict=True) if not i["indexed"]]
        words = tuple(_word_decoder(t) for _, t in data)
        specs[topic0] = _EventSpec(
            cls=cls,
            topic_fields=tuple(indexed),
            data_fields=tuple(n for n, _ in data),
            data_types=tuple(t for _, t in data),
            data_words=None if any(w is None for w in words) else words,
        )
    missing = set(by_name) - {s.cls.event_name for s in specs.values()}
    if missing:
        raise RuntimeError(f"events {sorted(missing)} are not in the ChannelDeposit ABI")
    return specs


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value.startswith("0x") else value)
    return bytes(value)


def decode_log(log: Mapping[str, Any]) -> ChannelEventLog | None:
    """Decodes one log if its topic0 is a ChannelDeposit event, else None. Does not check the emitter:
    callers filter by address (a token could emit a log with the same topic)."""
    topics = log.get("topics") or ()
    if not topics:
        return None
    spec = _event_specs().get(_as_bytes(topics[0]))
    if spec is None or len(topics) != len(spec.topic_fields) + 1:
        return None
    values: dict[str, Any] = {}
    for (name, decoder), topic in zip(spec.topic_fields, topics[1:], strict=True):
        values[name] = decoder(_as_bytes(topic))
    data = _as_bytes(log.get("data") or b"")
    if spec.data_words is not None:
        if len(data) != 32 * len(spec.data_words):
            return None
        for i, (name, decoder) in enumerate(zip(spec.data_fields, spec.data_words, strict=True)):
            values[name] = decoder(data[32 * i : 32 * i + 32])
    else:  # pragma: no cover - ChannelDeposit's events are all static
        for name, value in zip(spec.data_fields, abi_decode(list(spec.data_types), data), strict=True):
            values[name] = value
    return spec.cls(
        block_number=_as_int(log["blockNumber"]),
        log_index=_as_int(log["logIndex"]),
        tx_hash=_as_bytes(log["transactionHash"]),
        **values,
    )


def _as_int(value: Any) -> int:
    """Quantities arrive as ints from web3's formatters and as 0x-hex from a raw JSON-RPC answer."""
    return int(value, 16) if isinstance(value, str) else int(value)



def event_topics(kinds: Iterable[type[ChannelEventLog]]) -> list[str]:
    """The topic0 values (0x-hex) of these event kinds, for an eth_getLogs filter."""
    wanted = {cls.event_name for cls in kinds}
    return ["0x" + topic.hex() for topic, spec in _event_specs().items() if spec.cls.event_name in wanted]


__all__ = [
    "EVENT_TYPES",
    "ChannelClaimed",
    "ChannelDeposited",
    "ChannelEventLog",
    "ChannelOpened",
    "ChannelSettled",
    "CloseRequested",
    "PayoutDeferred",
    "PendingWithdrawn",
    "decode_log",
    "event_topics",
]
