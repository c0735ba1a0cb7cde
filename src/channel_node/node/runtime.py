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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from channel_node.chain.logs import ChannelClaimed, ChannelEventLog, ChannelOpened, ChannelSettled

# ChainChannel, ChainUnavailable and ChainView live with the chain edge; importable from here too.
from channel_node.chain.ports import ChainChannel, ChainUnavailable, ChainView
from channel_node.core import (
    Accepted,
    ChainFigures,
    ChainTime,
    ChannelState,
    ConsentToClose,
    ContractSend,
    ContractSendClaim,
    ContractSendClose,
    Effect,
    NewConfirmedBlock,
    OperatorClaim,
    OperatorClose,
    PaywallCooperativeClose,
    PaywallPayment,
    Reject,
    Rejected,
    StateChange,
    WallTime,
    transition,
)
from channel_node.core.spending import Cap, Pass, Progress, Sale, Spending, Window, decide, progress, window
from channel_node.node import chain_events
from channel_node.node.recovery import SignerRecovery
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
from channel_node.store import (
    BlockRef,
    ChannelWrite,
    Charge,
    PaymentLookup,
    SpendingQuery,
    StaleWrite,
    Store,
    StoredChannel,
    outbox_items,
)

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
    # Caps and passes (docs/protocol.md, "Caps and passes"), as the price table matched them: the
    # read's cap group, the passes that cover it, and the pass the voucher buys.
    cap: Cap | None = None
    passes: tuple[Pass, ...] = ()
    buying: Pass | None = None

    def pass_keys(self) -> dict[str, str]:
        """name -> the key the store records each of the request's passes under (`pass_key`)."""
        offered = [*self.passes, *((self.buying,) if self.buying is not None else ())]
        return {p.name: p.key for p in offered}

    @property
    def spends(self) -> bool:
        """Whether caps or passes bear on this request (the store is asked for its standing)."""
        return self.cap is not None or bool(self.passes) or self.buying is not None


@dataclass(frozen=True)
class SpendingOutcome:
    """A capped or pass-covered request's standing, for its receipt or its refusal's offer. `sale`:
    what the read cost (None for a re-read or a retry, which cost nothing and record nothing), or
    for a refusal what it would cost now; `progress`: the channel against the request's cap after
    the request (before it, for a refusal); `pass_until`: when `sale.pass_name` ends."""

    sale: Sale | None
    progress: Progress | None
    pass_until: int | None = None


@dataclass(frozen=True)
class _Step:
    """What one `Runtime._step` decided and committed: the channel's new state and the core's effects."""

    state: ChannelState
    effects: list[Effect]

    @property
    def sends(self) -> list[ContractSend]:
        return [e for e in self.effects if isinstance(e, (ContractSendClaim, ContractSendClose))]


@dataclass(frozen=True)
class PaymentOutcome:
    effect: Accepted | Rejected
    state: ChannelState | None  # the channel after the request (None when unknown)
    spending: SpendingOutcome | None = None  # caps and passes: the channel's standing, when they apply

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
        zone: ZoneInfo | None = None,
    ) -> None:
        self.store = store
        self.domain = domain
        self.receiver = receiver
        self.token = token
        self.chain = chain
        self.close_margin = close_margin
        self.clock = clock
        self.recovery = recovery  # None: recover inline on the loop's thread
        self.zone = zone or ZoneInfo("UTC")  # calendar periods of caps (`[paywall] timezone`)
        # The claim key's address: the node sells only on channels whose configuration lets it claim
        # and close (receiver or receiver authorizer, docs/contract.md). None: no key, not checked.
        self.settler = settler
        # The offer's shortest close delay: a payer's close of a channel with a shorter one could be
        # final before the node's defence lands, so nothing is sold on it. 0: not checked.
        self.close_delay_min = 0
        # Other node processes write to the same store (PostgreSQL, docs/scaling.md): the cached
        # states may be stale. A write's compare-and-set catches that (StaleWrite: reload, decide
        # again); a decision that writes nothing is made again on a fresh read before it is answered.
        self.shared = False
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
                cached = request.channel_id in self._cache
                loaded = await self._load(request, signer)
                if isinstance(loaded, Rejected):
                    return PaymentOutcome(loaded, None)
                refusal = self._config_refusal(loaded.state.config)  # a channel's configuration never changes
                if refusal is not None:
                    return PaymentOutcome(refusal, None)
                try:
                    return await self._pay_locked(request, signer, loaded, commit, recheck=self.shared and cached)
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

    async def _pay_locked(
        self, request: PaymentRequest, signer: bytes, stored: StoredChannel, commit: bool = True, recheck: bool = False
    ) -> PaymentOutcome:
        """`recheck`: `stored` came from this process's cache and other processes share the store: an
        answer that would write nothing (a refusal, an article served again) raises StaleWrite so
        that `pay` decides again on a fresh read (docs/scaling.md, "What a process caches")."""
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
        wall = WallTime(int(now))
        win = window(request.cap.period, wall, self.zone) if request.cap is not None else None
        query = self._spending_query(request, win, wall)
        lookup = await self.store.lookup_payment(
            request.channel_id, request.resource, request.payment_id, request.once, spending=query
        )
        spending = None
        keys = request.pass_keys() if query is not None else {}  # no caps or passes here: nothing to key
        if query is not None:
            # The store holds passes by their terms' key; the rules see them by name (pass_key).
            held = {name: lookup.held_passes[key] for name, key in keys.items() if key in lookup.held_passes}
            lookup = replace(lookup, held_passes=held)
            spending = Spending(request.cap, lookup.cap_paid, request.passes, held, request.buying)
        event = PaywallPayment(
            amount=request.amount,
            signature=request.signature,
            signer=signer,
            price=request.price,
            now=wall,
            close_margin=self.close_margin,
            resource=request.resource,
            payment_id=request.payment_id,
            unlocked=lookup.unlocked,
            prior_resource=lookup.prior_resource,
            spending=spending,
        )
        new_state, effects = transition(state, event)
        effect = effects[0]  # a payment's first effect is always its answer (core.channel._charge)
        assert isinstance(effect, (Accepted, Rejected))
        standing = _standing(request, spending, effect, lookup, win, wall)
        if not commit:
            return PaymentOutcome(effect, new_state, standing)
        charge = None
        # A per-request call a cap or a pass made free has nothing to unlock and spends no room:
        # it is not recorded, so free calls cost the node no write (docs/protocol.md, "Caps and passes").
        if isinstance(effect, Accepted) and effect.record and (effect.charged or request.once or effect.sale is None):
            sale = effect.sale
            charge = Charge(
                request.resource, effect.charged, request.payment_id, request.once, int(now),
                *((sale.cap_group, keys.get(sale.pass_name) if sale.pass_name is not None else None, sale.pass_until)
                  if sale is not None else ()),
            )  # fmt: skip
        if recheck and not self._writes(stored, new_state, effects[1:], charge, anchor):
            raise StaleWrite("decided on a cached state")
        # The rest of the effects: a defence refreshed by a better voucher, if any.
        await self._write(stored, new_state, effects[1:], charge=charge, anchor=anchor)
        return PaymentOutcome(effect, new_state, standing)

    @staticmethod
    def _spending_query(request: PaymentRequest, win: Window | None, now: int) -> SpendingQuery | None:
        """What the store counts for a capped or pass-covered read, in the payment's own lookup:
        the group's charges in the cap's current window, and which of the passes the channel holds."""
        if not request.spends:
            return None
        names = list(request.pass_keys().values())
        group = request.cap.name if request.cap is not None else None
        since, until = (win.since, win.ends_at) if win is not None else (now, None)
        return SpendingQuery(group, since, tuple(dict.fromkeys(names)), now, until)

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
            state, _ = transition(state, chain_events.reset(on_chain))
            return state, ref
        refreshed = apply_chain(state, on_chain)
        if refreshed == state or (previous is not None and previous.block > ref.block):
            return refreshed, None  # the stored anchor, the higher block, still covers the figures
        return refreshed, ref

    # ------------------------------------------------------------------ chain events

    # ------------------------------------------------------------------ the one write path

    async def _write(
        self,
        stored: StoredChannel,
        state: ChannelState,
        effects: Sequence[Effect],
        *,
        charge: Charge | None = None,
        anchor: BlockRef | None = None,
        force: bool = False,
    ) -> StoredChannel:
        """Commits what a transition decided, when it decided anything: the new state, its charge,
        and an outbox row per ContractSend among `effects` (`store.outbox_items`), in one
        ChannelWrite, compare-and-set on the version `stored` was read at; then caches it. A
        transition that changed nothing, queued nothing and charged nothing on a stored channel
        writes nothing (unless `force`). Raises StaleWrite when another writer got there first."""
        outbox = outbox_items(effects)
        if not (force or self._writes(stored, state, effects, charge, anchor)):
            return stored
        version = await self.store.commit(ChannelWrite(state, stored.version, charge, outbox, anchor))
        written = StoredChannel(state, version, anchor=anchor if anchor is not None else stored.anchor)
        self._cache[state.channel_id] = written
        if self._known is not None:
            self._known.add(state.channel_id)
        return written

    @staticmethod
    def _writes(
        stored: StoredChannel, state: ChannelState, effects: Sequence[Effect], charge: Charge | None, anchor: BlockRef | None
    ) -> bool:
        """Whether `_write` commits this outcome (without `force`)."""
        changed = charge is not None or bool(outbox_items(effects)) or state != stored.state or anchor is not None
        return changed or stored.version == 0

    async def _step(
        self,
        channel: bytes,
        decide: Callable[[StoredChannel], Sequence[StateChange] | Rejected],
        *,
        missing: Callable[[], StoredChannel | None] = lambda: None,
        anchor: BlockRef | None = None,
        force: bool = False,
        then: Callable[[], None] | None = None,
    ) -> _Step | Rejected | None:
        """lock -> load -> transition -> commit, for every input but a payment.

        Under the channel's lock (this process is its only writer): load it (memory, then the store;
        `missing` may make a channel not stored yet, or None: unknown, and None is returned), ask
        `decide` for the inputs to apply to it (or a refusal before the core, returned as is), run
        them through the core, commit the outcome with its outbox rows (`_write`). A write another
        writer overtook (StaleWrite) is decided again from a fresh load, up to COMMIT_ATTEMPTS
        times, the way a payment is. `then` runs under the lock once the outcome is durable (or the
        channel turned out unknown). A payment keeps its own loop (`pay`): its refresh from the
        chain and its store lookups sit between the load and the transition, and a check commits
        nothing; it shares `_write`."""
        async with self._lock(channel):
            for _ in range(COMMIT_ATTEMPTS):
                # With other processes on the store, these rarer inputs always read it (a refusal
                # or a no-op must not rest on a stale state: docs/scaling.md).
                cached = None if self.shared else self._cache.get(channel)
                stored = cached or await self.store.load_channel(channel) or missing()
                if stored is None:
                    if then is not None:
                        then()
                    return None
                decided = decide(stored)
                if isinstance(decided, Rejected):
                    return decided
                state, effects = stored.state, list[Effect]()
                for change in decided:
                    state, produced = transition(state, change)
                    effects += produced
                try:
                    await self._write(stored, state, effects, anchor=anchor, force=force)
                except StaleWrite:
                    self._cache.pop(channel, None)  # someone else wrote: reload and decide again
                    continue
                if then is not None:
                    then()
                return _Step(state, effects)
            raise StaleWrite(f"channel 0x{channel.hex()} keeps changing under this node")

    # ------------------------------------------------------------------ chain events

    async def apply_chain_events(self, logs: list[ChannelEventLog]) -> int:
        """Feeds confirmed contract logs into the core, one commit per channel (channels in parallel,
        so the store's group commit takes them together). Decided transactions become outbox rows in
        the same commit. Returns how many logs concerned this node's channels."""
        if self._known is None:
            self._known = await self.store.channel_ids()
        known = self._known
        if self.shared:  # a channel another process learnt (its first voucher) is in the store, not in `known`
            for log in logs:
                channel = getattr(log, "channel_id", None)
                if isinstance(channel, bytes) and channel not in known and await self.store.load_channel(channel) is not None:
                    known.add(channel)
        by_channel: dict[bytes, list[ChannelEventLog]] = {}
        for log in logs:
            channel = getattr(log, "channel_id", None)
            if not isinstance(log, chain_events.CHANNEL_LOGS) or channel is None:
                continue
            # A channel opened earlier in this same batch counts as known for its later logs.
            if channel in known or channel in by_channel or (isinstance(log, ChannelOpened) and self._is_ours(log)):
                by_channel.setdefault(channel, []).append(log)
        await asyncio.gather(*(self._apply_channel_logs(channel, items) for channel, items in by_channel.items()))
        return sum(len(items) for items in by_channel.values())

    def _is_ours(self, opened: ChannelOpened) -> bool:
        config = opened.config
        return config.receiver == self.receiver and config.token == self.token

    async def _apply_channel_logs(self, channel: bytes, logs: list[ChannelEventLog]) -> None:
        opened = next((log for log in logs if isinstance(log, ChannelOpened)), None)

        def new() -> StoredChannel | None:  # first seen in these logs: its ChannelOpened has the config
            return None if opened is None else StoredChannel(ChannelState(channel_id=channel, config=opened.config), 0)

        changes = [chain_events.state_change(log) for log in logs]
        step = await self._step(channel, lambda _: changes, missing=new)
        if isinstance(step, _Step) and any(isinstance(log, (ChannelClaimed, ChannelSettled)) for log in logs):
            await self.store.complete_outbox(channel, step.state.claimed, step.state.settled)

    async def new_block(self, timestamp: ChainTime) -> int:
        """Re-asserts the defence of every channel with a payer's close pending. Returns how many
        channels still need a claim."""
        pending = 0
        block = NewConfirmedBlock(ChainTime(timestamp))
        for stored in await self.store.closing_channels():
            step = await self._step(stored.state.channel_id, lambda _: [block])
            if isinstance(step, _Step) and step.sends:
                pending += 1
        return pending

    async def cooperative_close(
        self, channel: bytes, amount: int, payer_signature: bytes, consenter: bytes | None = None
    ) -> ConsentToClose | Rejected:
        """The payer asks for the receiver's consent to close at `amount` (exactly the charged
        total). Its signature over the same cooperative-close message proves it is the payer.
        `consenter` is the address that will sign the consent: refused (CANNOT_CONSENT, nothing
        recorded) when the contract would not accept it for this channel. The consent is durable
        (`receiver_closing`) before it leaves."""

        def decide(stored: StoredChannel) -> list[StateChange] | Rejected:
            config = stored.state.config
            if consenter is not None and not config.may_act_for_receiver(consenter):
                return Rejected(Reject.CANNOT_CONSENT, "this node holds neither the receiver's key nor the channel's authorizer")
            try:
                signer = recover_signer(cooperative_close_digest(self.domain, channel, amount), payer_signature)
            except (InvalidSignature, ValueError) as exc:
                return Rejected(Reject.INVALID_SIGNATURE, str(exc))
            if signer != config.payer:
                return Rejected(Reject.INVALID_SIGNATURE, "not signed by the channel's payer")
            return [PaywallCooperativeClose(amount)]

        step = await self._step(channel, decide)
        if step is None:
            return Rejected(Reject.CHANNEL_UNKNOWN, "this node has no such channel")
        if isinstance(step, Rejected):
            return step
        answer = step.effects[0]
        assert isinstance(answer, (ConsentToClose, Rejected))  # the core answers a close request with one of these
        return answer

    def suspend(self, channel: bytes) -> None:
        """Stops selling on a channel until `replace_chain_view` gives it the chain's figures again
        (the watcher found that they were read at a block the chain no longer has)."""
        self._suspended.add(channel)

    @property
    def suspended(self) -> frozenset[bytes]:
        return frozenset(self._suspended)

    async def replace_chain_view(self, channel: bytes, on_chain: ChainFigures) -> None:
        """Forces the chain's figures onto a channel, even where they are lower (a re-sync after a
        deep reorg, or a read at a block that is gone): a `ContractReadReset`. A channel whose
        deposit is gone keeps its row, charges and best voucher, with zero chain figures, and is
        learned again if the deposit reappears. `on_chain` is a `ChainChannel` (its ref becomes the
        anchor) or bare figures (a client's `OnChainChannel`). The channel is sold on again once the
        reset is durable (always committed, as the re-read's record)."""
        anchor = on_chain.ref if isinstance(on_chain, ChainChannel) else None
        change = chain_events.reset(on_chain)
        await self._step(
            channel, lambda _: [change], anchor=anchor, force=True, then=lambda: self._suspended.discard(channel)
        )

    async def cover_anchor(self, channel: bytes, anchor: BlockRef) -> bool:
        """The watcher's cursor passed the anchor's block with that block still canonical: the
        channel's figures are now those of the logs the cursor covers."""
        async with self._lock(channel):
            cleared = await self.store.clear_anchor(channel, anchor)
            cached = self._cache.get(channel)
            if cleared and cached is not None and cached.anchor == anchor:
                self._cache[channel] = StoredChannel(cached.state, cached.version, cached.updated_at)
            return cleared

    async def operator(self, channel: bytes, action: OperatorClaim | OperatorClose) -> ContractSend | Rejected:
        """An operator's claim or close: the decision is committed as an outbox row, sent later."""
        step = await self._step(channel, lambda _: [action])
        if step is None:
            return Rejected(Reject.CHANNEL_UNKNOWN, "this node has no such channel")
        answer = step.effects[0] if isinstance(step, _Step) else step
        assert isinstance(answer, (ContractSendClaim, ContractSendClose, Rejected))  # the core's answers to an operator
        return answer

    async def channel(self, channel: bytes) -> ChannelState | None:
        cached = None if self.shared else self._cache.get(channel)
        if cached is not None:
            return cached.state
        stored = await self.store.load_channel(channel)
        return stored.state if stored else None


def _standing(
    request: PaymentRequest, spending: Spending | None, effect: Accepted | Rejected, lookup: PaymentLookup,
    win: Window | None, now: WallTime,
) -> SpendingOutcome | None:
    """The channel's standing after an accepted request (before a refused one): its cap progress
    and the pass that bought or covered the read, for the receipt or the corrective offer."""
    if spending is None:
        return None
    paid, oldest = lookup.cap_paid, lookup.cap_oldest
    sale: Sale | None
    if isinstance(effect, Accepted):
        sale = effect.sale
        if sale is not None and sale.cap_group is not None and sale.charge > 0:
            paid += sale.charge
            oldest = now if oldest is None else oldest
    else:
        sale = None if spending.buys_uncovered else decide(request.price, spending, now)
    cap = request.cap
    standing = progress(cap, win, paid, oldest, now) if cap is not None and win is not None else None
    until = None
    if sale is not None and sale.pass_name is not None:
        until = sale.pass_until if sale.pass_until is not None else lookup.held_passes.get(sale.pass_name)
    return SpendingOutcome(sale, standing, until)


def apply_chain(state: ChannelState, on_chain: ChainFigures) -> ChannelState:
    """Feeds what the chain shows into the core as inputs (absolute totals, so repeats are harmless)."""
    for change in chain_events.figures_inputs(on_chain):
        state, _ = transition(state, change)
    return state
