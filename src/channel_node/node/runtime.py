"""The one place that joins the pure core to the store and the chain.

Every paid request goes through `Runtime.pay`: recover the voucher's signer (CPU only, outside any
lock) -> take the channel's lock -> load the channel (memory, then store, then the chain for a
channel seen for the first time) -> `core.transition` -> commit to the store -> answer. The lock
makes this process the channel's only writer; the store's compare-and-set protects against any
other. The caller sends content only after `pay` returns an acceptance, i.e. after the commit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass

from channel_node.chain.logs import (
    ChannelClaimed,
    ChannelDeposited,
    ChannelEventLog,
    ChannelOpened,
    ChannelSettled,
    CloseRequested,
)
# ChainChannel, ChainUnavailable and ChainView live with the chain edge; importable from here too.
from channel_node.chain.ports import ChainChannel, ChainUnavailable, ChainView
from channel_node.core import (
    Accepted,
    ChainClaim,
    ChainCloseRequested,
    ChainDeposit,
    ChainReset,
    ChainSettled,
    ChannelEvent,
    ChannelState,
    CooperativeCloseAsked,
    Effect,
    NewBlock,
    OperatorClaim,
    OperatorClose,
    PaymentReceived,
    Reject,
    Rejected,
    SendClaim,
    SendClose,
    transition,
)
from channel_node.signing import (
    ChannelConfig,
    Domain,
    InvalidSignature,
    channel_id,
    cooperative_close_digest,
    recover_signer,
    voucher_digest,
)
from channel_node.signing.eip712 import ZERO_ADDRESS
from channel_node.node.recovery import SignerRecovery
from channel_node.store import BlockRef, Charge, ChannelWrite, OutboxItem, StaleWrite, Store, StoredChannel

DEPOSIT_REFRESH_INTERVAL = 1.0  # seconds between chain reads for one channel whose voucher exceeds its deposit
UNKNOWN_CHANNEL_TTL = 5.0  # seconds an id the chain does not know is answered from memory
COMMIT_ATTEMPTS = 3


@dataclass(frozen=True)
class PaymentRequest:
    channel_id: bytes
    amount: int
    signature: bytes
    resource: str
    price: int
    once: bool
    payment_id: str | None = None
    config: ChannelConfig | None = None  # sent with the first voucher of a channel so the node can check it


@dataclass(frozen=True)
class PaymentOutcome:
    effect: Accepted | Rejected
    state: ChannelState | None  # the channel after the request (None when unknown)

    @property
    def accepted(self) -> bool:
        return isinstance(self.effect, Accepted)


class Runtime:
    def __init__(
        self,
        store: Store,
        domain: Domain,
        receiver: bytes,
        token: bytes,
        chain: ChainView | None,
        close_margin: int,
        clock: Callable[[], float] = time.time,
        recovery: SignerRecovery | None = None,
        settler: bytes | None = None,
    ) -> None:
        self.store = store
        self.domain = domain
        self.receiver = receiver
        self.token = token
        self.chain = chain
        self.close_margin = close_margin
        self.clock = clock
        self.recovery = recovery  # None: recover inline on the loop's thread
        # The claim key's address: the node sells only on channels whose configuration lets it claim
        # and close (receiver or receiver authorizer, docs/contract.md). None: no key, not checked.
        self.settler = settler
        # The offer's shortest close delay: a payer's close of a channel with a shorter one could be
        # final before the node's defence lands, so nothing is sold on it. 0: not checked.
        self.close_delay_min = 0
        self._locks: dict[bytes, asyncio.Lock] = {}
        self._cache: dict[bytes, StoredChannel] = {}
        self._last_refresh: dict[bytes, float] = {}
        self._unknown_until: dict[bytes, float] = {}
        self._known: set[bytes] | None = None  # channel ids in the store, loaded on first chain event
        # Channels whose figures rest on a block the chain no longer has, until the watcher has read
        # them again: nothing is sold on them meanwhile (docs/security.md, "Reorganisations").
        self._suspended: set[bytes] = set()

    @property
    def loaded_channels(self) -> int:
        """Channels held in memory: those this process has served or seen on chain since it started."""
        return len(self._cache)

    def _lock(self, channel: bytes) -> asyncio.Lock:
        lock = self._locks.get(channel)
        if lock is None:
            lock = self._locks[channel] = asyncio.Lock()
        return lock

    async def check(self, request: PaymentRequest) -> PaymentOutcome:
        """What `pay` would decide now, committing nothing: the paywall asks it before it forwards a
        priced request to an origin, so a voucher that cannot pay (forged, unknown, too low, stale)
        never makes the origin do the work, nor show its answer (docs/security.md, "Nothing reaches
        the origin unpaid"). `pay` decides again after the fetch."""
        return await self.pay(request, commit=False)

    async def pay(self, request: PaymentRequest, commit: bool = True) -> PaymentOutcome:
        try:
            digest = voucher_digest(self.domain, request.channel_id, request.amount)
            if self.recovery is None:
                signer = recover_signer(digest, request.signature)
            else:
                signer = await self.recovery.recover(digest, request.signature)
        except (InvalidSignature, ValueError) as exc:
            return PaymentOutcome(Rejected(Reject.INVALID_SIGNATURE, str(exc)), None)
        async with self._lock(request.channel_id):
            if request.channel_id in self._suspended:
                raise ChainUnavailable("the chain reorganised under this channel's deposit; it is being read again")
            for _ in range(COMMIT_ATTEMPTS):
                loaded = await self._load(request, signer)
                if isinstance(loaded, Rejected):
                    return PaymentOutcome(loaded, None)
                refusal = self._config_refusal(loaded.state.config)
                if refusal is not None:
                    return PaymentOutcome(refusal, None)
                try:
                    return await self._pay_locked(request, signer, loaded, commit)
                except StaleWrite:
                    self._cache.pop(request.channel_id, None)  # someone else wrote: reload and decide again
            raise StaleWrite(f"channel 0x{request.channel_id.hex()} keeps changing under this node")

    def _config_refusal(self, config: ChannelConfig) -> Rejected | None:
        """The node sells only on a channel whose receiver side is keys it holds: its claim key can
        claim and close it, and its `receiverAuthorizer` is the zero address, the receiver, or that
        claim key. Any other authorizer could consent to a cooperative close at any amount (down to
        nothing) with the payer, or close the channel by receiver, taking back what was sold; a node
        without a claim key therefore accepts only the zero authorizer (or the receiver itself)
        (docs/security.md, "The receiver authorizer is the node's own"). And its close delay is at
        least the offer's minimum (docs/security.md, "The offer's close delay is a rule")."""
        authorizer = config.receiver_authorizer
        foreign = authorizer not in (ZERO_ADDRESS, config.receiver) and authorizer != self.settler
        if foreign or (self.settler is not None and not config.may_act_for_receiver(self.settler)):
            return Rejected(Reject.WRONG_AUTHORIZER, "the channel names a receiver authorizer this node does not hold")
        if config.close_delay < self.close_delay_min:
            return Rejected(Reject.CLOSE_DELAY_TOO_SHORT, f"the channel's close delay is below this node's minimum of {self.close_delay_min} s")
        return None

    async def _pay_locked(self, request: PaymentRequest, signer: bytes, stored: StoredChannel, commit: bool = True) -> PaymentOutcome:
        state = stored.state
        now = self.clock()
        anchor = stored.anchor if stored.version == 0 else None  # a channel just read from the chain
        if request.amount > state.deposited and not state.settled:
            last = self._last_refresh.get(state.channel_id)
            state, refreshed = await self._refresh(stored, now)  # maybe a top-up the node has not seen yet
            anchor = refreshed or anchor
            if not commit:
                # A check keeps nothing it read, so it leaves the rate limit to the payment that
                # follows, which reads again (at most two reads per channel and interval).
                if last is None:
                    self._last_refresh.pop(state.channel_id, None)
                else:
                    self._last_refresh[state.channel_id] = last
        lookup = await self.store.lookup_payment(request.channel_id, request.resource, request.payment_id, request.once)
        event = PaymentReceived(
            amount=request.amount,
            signature=request.signature,
            signer=signer,
            price=request.price,
            now=int(now),
            close_margin=self.close_margin,
            resource=request.resource,
            payment_id=request.payment_id,
            unlocked=lookup.unlocked,
            prior_resource=lookup.prior_resource,
        )
        new_state, effects = transition(state, event)
        effect = effects[0]
        if not commit:
            return PaymentOutcome(effect, new_state)
        charge = None
        if isinstance(effect, Accepted) and effect.record:
            charge = Charge(request.resource, effect.charged, request.payment_id, request.once, int(now))
        if charge is not None or new_state != stored.state or stored.version == 0 or anchor is not None:
            outbox = outbox_items(effects[1:])  # a defence refreshed by a better voucher, if any
            version = await self.store.commit(ChannelWrite(new_state, stored.version, charge, outbox, anchor))
            self._cache[request.channel_id] = StoredChannel(new_state, version, anchor=anchor or stored.anchor)
            if self._known is not None:
                self._known.add(request.channel_id)
        return PaymentOutcome(effect, new_state)

    async def _load(self, request: PaymentRequest, signer: bytes) -> StoredChannel | Rejected:
        cached = self._cache.get(request.channel_id)
        if cached is not None:
            return cached
        stored = await self.store.load_channel(request.channel_id)
        if stored is not None:
            self._cache[request.channel_id] = stored
            return stored
        return await self._discover(request, signer)

    async def _discover(self, request: PaymentRequest, signer: bytes) -> StoredChannel | Rejected:
        """A channel's first voucher: check its configuration, then ask the chain for its deposit."""
        config = request.config
        if config is None:
            return Rejected(Reject.CHANNEL_UNKNOWN, "unknown channel: send its configuration with the first voucher")
        if channel_id(self.domain, config) != request.channel_id:
            return Rejected(Reject.CHANNEL_UNKNOWN, "the channel configuration does not hash to channelId")
        if config.receiver != self.receiver:
            return Rejected(Reject.CHANNEL_UNKNOWN, "the channel pays another receiver")
        if config.token != self.token:
            return Rejected(Reject.CHANNEL_UNKNOWN, "the channel holds another asset")
        if signer != config.signer:  # checked before the chain is asked, so forgeries cost no RPC call
            return Rejected(Reject.INVALID_SIGNATURE, "the voucher is not signed by the channel's signer")
        refusal = self._config_refusal(config)  # nor unsettleable ones
        if refusal is not None:
            return refusal
        now = self.clock()
        if self._unknown_until.get(request.channel_id, 0) > now or self.chain is None:
            return Rejected(Reject.CHANNEL_UNKNOWN, "no confirmed deposit for this channel")
        on_chain = await self.chain.confirmed_channel(request.channel_id)
        if on_chain is None or on_chain.deposited == 0:
            self._unknown_until[request.channel_id] = now + UNKNOWN_CHANNEL_TTL
            return Rejected(Reject.CHANNEL_UNKNOWN, "no confirmed deposit for this channel")
        self._last_refresh[request.channel_id] = now
        state = apply_chain(ChannelState(channel_id=request.channel_id, config=config), on_chain)
        # The read's block travels with the figures into the store: the watcher checks it is still
        # canonical when its cursor gets there, and reads the channel again if it is not.
        return StoredChannel(state, version=0, anchor=on_chain.ref)

    async def _refresh(self, stored: StoredChannel, now: float) -> tuple[ChannelState, BlockRef | None]:
        """Reads the channel again (a voucher above the deposit); returns the state and the anchor to
        store with it (None: keep the stored one)."""
        state = stored.state
        if self.chain is None or now - self._last_refresh.get(state.channel_id, 0) < DEPOSIT_REFRESH_INTERVAL:
            return state, None
        self._last_refresh[state.channel_id] = now
        on_chain = await self.chain.confirmed_channel(state.channel_id)
        if on_chain is None:
            return state, None
        ref, previous = on_chain.ref, stored.anchor
        if ref is None:  # a view that does not say where it read (test doubles)
            return apply_chain(state, on_chain), None
        if previous is not None and previous != ref and not await self.chain.is_canonical(previous):
            # What the node holds was read at a block the chain no longer has: the new read replaces
            # it, even where it is lower. (A pending close's defence is re-asserted at the next block.)
            state, _ = transition(state, chain_reset(on_chain))
            return state, ref
        refreshed = apply_chain(state, on_chain)
        if refreshed == state or (previous is not None and previous.block > ref.block):
            return refreshed, None  # the stored anchor, the higher block, still covers the figures
        return refreshed, ref

    # ------------------------------------------------------------------ chain events

    async def apply_chain_events(self, logs: list[ChannelEventLog]) -> int:
        """Feeds confirmed contract logs into the core, one commit per channel (channels in parallel,
        so the store's group commit takes them together). Decided transactions become outbox rows in
        the same commit. Returns how many logs concerned this node's channels."""
        if self._known is None:
            self._known = await self.store.channel_ids()
        by_channel: dict[bytes, list[ChannelEventLog]] = {}
        for log in logs:
            channel = getattr(log, "channel_id", None)
            if channel is None:
                continue
            # A channel opened earlier in this same batch counts as known for its later logs.
            if channel in self._known or channel in by_channel or (isinstance(log, ChannelOpened) and self._is_ours(log)):
                by_channel.setdefault(channel, []).append(log)
        await asyncio.gather(*(self._apply_channel_logs(channel, items) for channel, items in by_channel.items()))
        return sum(len(items) for items in by_channel.values())

    def _is_ours(self, opened: ChannelOpened) -> bool:
        config = opened.config
        return config.receiver == self.receiver and config.token == self.token

    async def _apply_channel_logs(self, channel: bytes, logs: list[ChannelEventLog]) -> None:
        async with self._lock(channel):
            for _ in range(COMMIT_ATTEMPTS):
                stored = self._cache.get(channel) or await self.store.load_channel(channel)
                if stored is None:
                    opened = next(log for log in logs if isinstance(log, ChannelOpened))
                    stored = StoredChannel(ChannelState(channel_id=channel, config=opened.config), version=0)
                state, effects = stored.state, []
                for log in logs:
                    state, produced = transition(state, core_event(log))
                    effects += produced
                outbox = outbox_items(effects)
                if state == stored.state and stored.version and not outbox:
                    break
                try:
                    version = await self.store.commit(ChannelWrite(state, stored.version, outbox=outbox))
                except StaleWrite:
                    self._cache.pop(channel, None)
                    continue
                self._cache[channel] = StoredChannel(state, version, anchor=stored.anchor)
                self._known.add(channel)
                break
            else:
                raise StaleWrite(f"channel 0x{channel.hex()} keeps changing under this node")
        if any(isinstance(log, (ChannelClaimed, ChannelSettled)) for log in logs):
            await self.store.complete_outbox(channel, state.claimed, state.settled)

    async def new_block(self, timestamp: int) -> int:
        """Re-asserts the defence of every channel with a payer's close pending. Returns how many
        channels still need a claim."""
        pending = 0
        for stored in await self.store.closing_channels():
            channel = stored.state.channel_id
            async with self._lock(channel):
                current = self._cache.get(channel) or await self.store.load_channel(channel)
                state, effects = transition(current.state, NewBlock(timestamp))
                outbox = outbox_items(effects)
                if outbox:
                    pending += 1
                    version = await self.store.commit(ChannelWrite(state, current.version, outbox=outbox))
                    self._cache[channel] = StoredChannel(state, version, anchor=current.anchor)
        return pending

    async def cooperative_close(
        self, channel: bytes, amount: int, payer_signature: bytes, consenter: bytes | None = None
    ) -> Effect:
        """The payer asks for the receiver's consent to close at `amount` (exactly the charged
        total). Its signature over the same cooperative-close message proves it is the payer.
        `consenter` is the address that will sign the consent: refused (CANNOT_CONSENT, nothing
        recorded) when the contract would not accept it for this channel."""
        async with self._lock(channel):
            stored = self._cache.get(channel) or await self.store.load_channel(channel)
            if stored is None:
                return Rejected(Reject.CHANNEL_UNKNOWN, "this node has no such channel")
            if consenter is not None and not stored.state.config.may_act_for_receiver(consenter):
                return Rejected(Reject.CANNOT_CONSENT, "this node holds neither the receiver's key nor the channel's authorizer")
            try:
                signer = recover_signer(cooperative_close_digest(self.domain, channel, amount), payer_signature)
            except (InvalidSignature, ValueError) as exc:
                return Rejected(Reject.INVALID_SIGNATURE, str(exc))
            if signer != stored.state.config.payer:
                return Rejected(Reject.INVALID_SIGNATURE, "not signed by the channel's payer")
            state, effects = transition(stored.state, CooperativeCloseAsked(amount))
            if state != stored.state:  # consent is durable before it leaves
                version = await self.store.commit(ChannelWrite(state, stored.version))
                self._cache[channel] = StoredChannel(state, version, anchor=stored.anchor)
            return effects[0]

    def suspend(self, channel: bytes) -> None:
        """Stops selling on a channel until `replace_chain_view` gives it the chain's figures again
        (the watcher found that they were read at a block the chain no longer has)."""
        self._suspended.add(channel)

    @property
    def suspended(self) -> frozenset[bytes]:
        return frozenset(self._suspended)

    async def replace_chain_view(self, channel: bytes, on_chain) -> None:
        """Forces the chain's figures onto a channel, even where they are lower (a re-sync after a
        deep reorg, or a read at a block that is gone): a `ChainReset`. A channel whose deposit is
        gone keeps its row, charges and best voucher, with zero chain figures, and is learned again
        if the deposit reappears. `on_chain` is a `ChainChannel` (its ref becomes the anchor) or a
        client's `OnChainChannel`."""
        async with self._lock(channel):
            stored = self._cache.get(channel) or await self.store.load_channel(channel)
            if stored is None:
                self._suspended.discard(channel)
                return
            state, effects = transition(stored.state, chain_reset(on_chain))
            anchor = getattr(on_chain, "ref", None)
            write = ChannelWrite(state, stored.version, outbox=outbox_items(effects), anchor=anchor)
            version = await self.store.commit(write)
            self._cache[channel] = StoredChannel(state, version, anchor=anchor or stored.anchor)
            self._suspended.discard(channel)

    async def cover_anchor(self, channel: bytes, anchor: BlockRef) -> bool:
        """The watcher's cursor passed the anchor's block with that block still canonical: the
        channel's figures are now those of the logs the cursor covers."""
        async with self._lock(channel):
            cleared = await self.store.clear_anchor(channel, anchor)
            cached = self._cache.get(channel)
            if cleared and cached is not None and cached.anchor == anchor:
                self._cache[channel] = StoredChannel(cached.state, cached.version, cached.updated_at)
            return cleared

    async def operator(self, channel: bytes, action: OperatorClaim | OperatorClose) -> Effect:
        """An operator's claim or close: the decision is committed as an outbox row, sent later."""
        async with self._lock(channel):
            stored = self._cache.get(channel) or await self.store.load_channel(channel)
            if stored is None:
                return Rejected(Reject.CHANNEL_UNKNOWN, "this node has no such channel")
            state, effects = transition(stored.state, action)
            outbox = outbox_items(effects)
            if outbox or state != stored.state:
                version = await self.store.commit(ChannelWrite(state, stored.version, outbox=outbox))
                self._cache[channel] = StoredChannel(state, version, anchor=stored.anchor)
            return effects[0]

    async def channel(self, channel: bytes) -> ChannelState | None:
        cached = self._cache.get(channel)
        if cached is not None:
            return cached.state
        stored = await self.store.load_channel(channel)
        return stored.state if stored else None


def apply_chain(state: ChannelState, on_chain: ChainChannel) -> ChannelState:
    """Feeds what the chain shows into the core as events (absolute totals, so repeats are harmless)."""
    events = [ChainDeposit(on_chain.deposited), ChainClaim(on_chain.claimed)]
    if on_chain.close_deadline is not None:
        events.append(ChainCloseRequested(on_chain.close_deadline))
    if on_chain.settled:
        events.append(ChainSettled(on_chain.claimed))
    for event in events:
        state, _ = transition(state, event)
    return state


def chain_reset(on_chain) -> ChainReset:
    """The chain's figures as the one input that may lower the node's."""
    return ChainReset(on_chain.deposited, on_chain.claimed, on_chain.close_deadline, on_chain.settled)


def core_event(log: ChannelEventLog) -> ChannelEvent:
    """A confirmed contract log as the core's input (absolute totals: replays change nothing)."""
    match log:
        case ChannelOpened(deposited=total) | ChannelDeposited(total_deposited=total):
            return ChainDeposit(total)
        case ChannelClaimed(total_claimed=total):
            return ChainClaim(total)
        case CloseRequested(deadline=deadline):
            return ChainCloseRequested(deadline)
        case ChannelSettled(total_claimed=total):
            return ChainSettled(total)
    raise TypeError(f"no core event for {type(log).__name__}")


def outbox_items(effects: list) -> tuple[OutboxItem, ...]:
    """The transactions among effects; of several claims only the highest matters."""
    items: dict[str, OutboxItem] = {}
    for effect in effects:
        if isinstance(effect, SendClaim):
            item = OutboxItem("claim", effect.amount, effect.signature, effect.deadline, effect.voucher_amount)
        elif isinstance(effect, SendClose):
            item = OutboxItem("close", effect.amount, effect.signature, voucher_amount=effect.voucher_amount)
        else:
            continue
        if item.kind not in items or items[item.kind].amount <= item.amount:
            items[item.kind] = item
    return tuple(items.values())
