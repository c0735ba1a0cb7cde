"""`channel-node wallet ...`: the reader's side from a terminal.

    channel-node wallet new                       # an encrypted keystore in the wallet folder
    channel-node wallet get URL [-o FILE] [--scheme exact|channel]   # pays if needed, prints or saves the content
    channel-node wallet channels | list | balance
    channel-node wallet topup CHANNEL AMOUNT         # 0.0005, 0.0005ETH, 0.02DUSD, 20000wei, 20000base
    channel-node wallet close CHANNEL [--node URL]   # cooperative with --node, else the unilateral request
    channel-node wallet finalize CHANNEL          # after the close delay: the rest comes back
    channel-node wallet trust SITE                # pay a site again after it was caught misbehaving
    channel-node wallet sites                     # per site: today, this month, caps (paid of cap), passes

`--monthly-limit` and `--site-monthly-limit` are the reader's monthly budget beside the daily limits
(calendar months in `--timezone`, local time by default); `--pass NAME` buys a site's pass when its
offer sells one and none is held (docs/security.md, "The reader's budgets").

The wallet folder (default ~/.channel-node/wallet, or CHANNEL_NODE_WALLET) holds `keystore.json`
(the main key, scrypt-encrypted; password from CHANNEL_NODE_KEYSTORE_PASSWORD or a prompt) and
`wallet.db` (channels, per-channel voucher keys, spending records; 0600). A wallet pays in one
asset, ETH or the token of `--token ADDRESS`, so its limits mean one thing. Amounts are typed and
shown in that asset's unit (`0.0005`, `0.0005ETH`, `0.02DUSD`; the token's symbol and decimals are
read from its contract), base units only with an explicit suffix (`20000wei`, `20000base`) or
`--base-units` (docs/amounts.md); `--json` prints integers in base units, for scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from channel_node.errors import ChannelNodeError, UsageError

if TYPE_CHECKING:  # the commands import what they use when they run: `channel-node --help` stays fast
    from rich.console import RenderableType
    from web3 import AsyncWeb3

    from channel_node.amounts import Asset
    from channel_node.chain.reverts import ContractRevert
    from channel_node.client import ChannelRecord, Policy, Result, Wallet, WalletStore

T = TypeVar("T")
Row = dict[str, object]  # one line of a command's output: JSON, or a row of the terminal's table

DEFAULT_FOLDER = Path(os.environ.get("CHANNEL_NODE_WALLET", Path.home() / ".channel-node" / "wallet"))


class CliError(UsageError):
    pass


def _folder(args: argparse.Namespace) -> Path:
    return Path(args.wallet) if args.wallet else DEFAULT_FOLDER


def _keystore(args: argparse.Namespace) -> Path:
    return _folder(args) / "keystore.json"


def _amount(text: str | None, asset: Asset, flag: str, base_units: bool = False) -> int | None:
    """An amount the user typed for `flag`, in `asset`'s unit (docs/amounts.md); with
    `--base-units`, a plain whole number of base units."""
    from channel_node.amounts import MAX_AMOUNT, parse_amount

    if text is None:
        return None
    if base_units and not re.fullmatch(r"[0-9]{1,100}", text.strip()):
        raise CliError(f"{flag}: with --base-units, {text.strip()!r} must be a whole number of base units (e.g. 20000)")
    if base_units:
        value = int(text.strip())
        if value > MAX_AMOUNT:
            raise CliError(f"{flag}: {text.strip()!r} is more than any on-chain amount (a uint256)")
        return value
    try:
        return parse_amount(text, asset)
    except UsageError as exc:
        raise CliError(f"{flag}: {exc}") from None


async def _asset_for(w3: AsyncWeb3[Any], token: str | bytes | None) -> Asset:
    """ETH, or the token's symbol and decimals as its contract answers them (cached per process)."""
    from eth_utils.address import is_address, to_canonical_address, to_checksum_address

    from channel_node.amounts import ETH, token_asset
    from channel_node.chain.erc20 import Erc20Client
    from channel_node.errors import RemoteError

    if token is None:
        return ETH
    if isinstance(token, str) and not is_address(token):
        raise CliError(f"--token must be a token's address (0x and 40 hex digits), not {token[:60]!r}")
    if to_canonical_address(token) == b"\0" * 20:
        return ETH
    address = to_checksum_address(token)
    try:
        symbol, decimals = await Erc20Client(w3, address).metadata()
    except Exception as exc:  # the chain failed between two calls: say so in one line
        raise RemoteError(f"cannot read token {address}'s symbol and decimals ({type(exc).__name__})") from None
    return token_asset(symbol, decimals, address)


def _policy(args: argparse.Namespace, asset: Asset) -> Policy:
    from channel_node.client import Policy

    try:
        return Policy(
            asset=args.token,
            deposit_multiple=args.deposit_multiple,
            per_request_limit=_amount(args.max_price, asset, "--max-price", args.base_units),
            per_site_daily_limit=_amount(args.site_daily_limit, asset, "--site-daily-limit", args.base_units),
            daily_limit=_amount(args.daily_limit, asset, "--daily-limit", args.base_units),
            per_site_monthly_limit=_amount(getattr(args, "site_monthly_limit", None), asset, "--site-monthly-limit", args.base_units),
            monthly_limit=_amount(getattr(args, "monthly_limit", None), asset, "--monthly-limit", args.base_units),
            timezone=getattr(args, "timezone", None),
            passes=tuple(getattr(args, "passes", None) or ()),
        )
    except ValueError as exc:
        raise CliError(str(exc).replace("timezone must", "--timezone must").replace("passes must", "--pass must")) from None


async def _open_wallet(args: argparse.Namespace) -> tuple[Wallet, AsyncWeb3[Any], WalletStore]:
    from web3 import AsyncWeb3
    from web3.providers import AsyncHTTPProvider

    from channel_node.cli.urls import check_url, unreachable
    from channel_node.client import Wallet, WalletStore
    from channel_node.keys import KeystoreError, load_key, read_password

    check_url(args.rpc_url, "--rpc-url", secret=True)
    keystore = _keystore(args)
    if not keystore.exists():
        raise CliError(f"no wallet at {keystore.parent}: run `channel-node wallet new` or `wallet import` first")
    try:
        key = load_key(keystore, read_password(confirm=False))
    except KeystoreError as exc:
        raise CliError(str(exc)) from None
    probe = AsyncWeb3(AsyncHTTPProvider(args.rpc_url, exception_retry_configuration=None))
    try:  # the first call without web3's retries: a wrong --rpc-url is said at once, not after 4 s of backoff
        await probe.eth.chain_id
    except Exception as exc:
        fix = "is the chain's node running there? give --rpc-url (or CHANNEL_NODE_RPC_URL) the chain's JSON-RPC URL"
        raise CliError(unreachable(exc, args.rpc_url, "the chain at", fix, secret=True)) from None
    finally:
        await probe.provider.disconnect()
    w3 = AsyncWeb3(AsyncHTTPProvider(args.rpc_url))  # the wallet's own, with web3's retries for a flaky endpoint
    try:
        asset = await _asset_for(w3, args.token)
        policy = _policy(args, asset)
    except BaseException:
        await w3.provider.disconnect()
        raise
    store = WalletStore(_folder(args) / "wallet.db")
    wallet = Wallet(w3, key, store, policy)
    wallet.asset = asset  # its messages show amounts as the token's symbol and decimals say
    return wallet, w3, store


async def _with_wallet(args: argparse.Namespace, action: Callable[[Wallet], Awaitable[T]], waiting: str | None = None) -> T:
    """Runs `action` with an open wallet; `waiting` shows a spinner on the terminal meanwhile (for
    on-chain steps that take a block or more)."""
    wallet, w3, store = await _open_wallet(args)
    try:
        if waiting is None:
            return await action(wallet)
        from rich.console import Console

        with Console(stderr=True).status(waiting):
            return await action(wallet)
    finally:
        store.close()
        await w3.provider.disconnect()


def _asset_of(record: ChannelRecord) -> str:
    from eth_utils.address import to_checksum_address

    return "ETH" if record.config.is_eth else to_checksum_address(record.config.token)


def _channel_rows(wallet: Wallet) -> list[Row]:
    return [
        {
            "channel": r.hex_id, "receiver": r.receiver, "asset": _asset_of(r), "status": r.status, "deposited": str(r.deposited),
            "signed": str(r.signed), "charged": str(r.charged), "unspent": str(r.deposited - r.charged),
            "closeDeadline": r.close_deadline,
        }
        for r in wallet.channels()
    ]  # fmt: skip


async def _channel_asset(wallet: Wallet, record: ChannelRecord | None) -> Asset:
    """A channel's asset; the wallet's own for a channel it does not know (the command refuses it)."""
    if record is None:
        return await _asset_for(wallet.w3, wallet.policy.asset)
    return await _asset_for(wallet.w3, None if record.config.is_eth else record.config.token)


def _find(wallet: Wallet, channel: str) -> ChannelRecord | None:
    wanted = _channel_hex(channel)
    return next((r for r in wallet.channels() if r.hex_id == wanted), None)


def _channel_hex(text: str) -> str:
    """A channel id as typed, in the form `ChannelRecord.hex_id` has (0x and lowercase)."""
    text = text.strip().lower()
    return text if text.startswith("0x") else "0x" + text


async def _channel_view(wallet: Wallet, width: int) -> RenderableType:
    """The channels as people read them: amounts in each channel's asset (the symbol in its own
    column), fitted to `width` (cli/tables.py); `--json` has every field in base units."""
    from channel_node.amounts import format_number
    from channel_node.cli.tables import FOLD, KEEP, fitted_table

    rows = []
    for r in wallet.channels():
        asset = await _asset_for(wallet.w3, None if r.config.is_eth else r.config.token)
        rows.append([r.hex_id, asset.symbol, r.status] + [format_number(v, asset.decimals) for v in
                                                          (r.deposited, r.signed, r.charged, r.deposited - r.charged)])  # fmt: skip
    columns = [("channel", FOLD), ("asset", KEEP), ("status", KEEP), ("deposited", KEEP), ("signed", KEEP),
               ("charged", KEEP), ("unspent", KEEP)]  # fmt: skip
    return fitted_table("channels", columns, rows, width, right=("deposited", "signed", "charged", "unspent"))


def _deposits_made(wallet: Wallet, before: dict[str, int], asset: Asset) -> list[str]:
    """What a `get` locked on chain, as people read it: the channels it opened and topped up."""
    from channel_node.amounts import format_amount

    lines = []
    for r in wallet.channels():
        if r.hex_id not in before and r.deposited:
            lines.append(f"opened channel {r.hex_id} with a deposit of {format_amount(r.deposited, asset)}")
        elif r.hex_id in before and r.deposited > before[r.hex_id]:
            lines.append(f"topped up channel {r.hex_id} by {format_amount(r.deposited - before[r.hex_id], asset)} "
                         f"to {format_amount(r.deposited, asset)}")  # fmt: skip
    return lines


async def _reconcile_exact(wallet: Wallet) -> None:
    """Expired `exact` authorizations the chain shows unused stop counting as spent (client/exact.py)."""
    from channel_node.client import exact_payer

    try:
        await exact_payer(wallet).reconcile()
    except Exception as exc:  # an unreachable chain only delays it: the next run tries again
        import logging

        logging.getLogger("channel_node.client").warning("could not reconcile exact authorizations (%s)", type(exc).__name__)


async def _get(args: argparse.Namespace) -> int:

    import aiohttp
    from rich.console import Console

    from channel_node.cli.urls import check_url, unreachable
    from channel_node.client import PayingSession, ServerMisbehaved, WalletError, site_of

    check_url(args.url, "the URL")  # before the password prompt: a typo costs nothing

    async def fetch(wallet: Wallet) -> tuple[Result, Asset, list[str], Asset | None, dict[str, str]]:
        asset = await _asset_for(wallet.w3, wallet.policy.asset)  # an offer in another asset is refused
        await _reconcile_exact(wallet)
        before = {r.hex_id: r.deposited for r in wallet.channels()}
        async with PayingSession(wallet, scheme=args.scheme) as session:
            result = await session.get(args.url)
        if result.status == 402:
            reason = await _unpaid(wallet, result)  # while the wallet is open: it may read the chain
            if reason is not None:
                raise CliError(reason)
        periods = {c.name: c.period for c in wallet.store.caps(site_of(args.url))}  # the offers', kept by the wallet
        return result, asset, _deposits_made(wallet, before, asset), wallet.display_asset(site_of(args.url)), periods

    try:
        result, asset, deposits, shown, periods = await _with_wallet(args, fetch, f"fetching {args.url} ...")
    except ServerMisbehaved as exc:
        site = site_of(args.url)
        raise CliError(f"{exc}; not paying {site} again (run `channel-node wallet trust {site}` if you trust it)") from None
    except WalletError as exc:
        raise CliError(str(exc)) from None
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise CliError(unreachable(exc, args.url, "the site at", "is the site running? check the URL")) from None
    console = Console(stderr=True)
    if args.output:
        # The command's last step, once, after the loop's work is done: nothing else waits on the loop.
        Path(args.output).write_bytes(result.body)  # noqa: ASYNC240 (see above)
    elif result.ok:
        sys.stdout.buffer.write(result.body)
        sys.stdout.flush()
    from channel_node.amounts import format_amount

    total = result.receipt.get("chargedTotal") if result.receipt else None
    if isinstance(total, str) and total.isdigit() and len(total) <= 78:
        total = format_amount(int(total), asset)
    why = ""
    if result.status == 402 and "PAYMENT-REQUIRED" in result.headers:
        from channel_node.wire.envelope import decode_header

        try:
            refusal = decode_header(result.headers["PAYMENT-REQUIRED"])
            why = f" ({str(refusal.get('error'))[:40]}: {str(refusal.get('message'))[:160]}; nothing more was signed)"
        except (ValueError, TypeError):
            why = ""
    for line in deposits:
        console.print(line, soft_wrap=True, markup=False)
    console.print(f"{result.status} {args.url}: charged {_charged_text(result.charged, asset, shown)}"
                  + (f" (channel total {total})" if total else "") + why,
                  soft_wrap=True, markup=False)  # fmt: skip
    for line in _receipt_lines(result.receipt, shown or asset, args, periods):
        console.print(line, soft_wrap=True, markup=False)
    return 0 if result.ok else 1


def _charged_text(amount: int, asset: Asset, shown: Asset | None) -> str:
    """`0.02 DUSD`, or with the site's display form `$0.02 (0.02 DUSD)`: the site names the sign, the
    wallet's own unit stands beside it (docs/protocol.md, "Display forms")."""
    from channel_node.amounts import format_amount, format_display

    exact = format_amount(amount, asset)
    return exact if shown is None or shown.display is None else f"{format_display(amount, shown)} ({exact})"


def _zone(args: argparse.Namespace) -> Any:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    return ZoneInfo(args.timezone) if args.timezone else datetime.now().astimezone().tzinfo


def _when(at: int, zone: Any) -> str:
    """A unix time as a date (`2027-01-01`), with the time when it is not midnight, in `zone`."""
    from datetime import datetime

    local = datetime.fromtimestamp(at, zone)
    return local.strftime("%Y-%m-%d") if (local.hour, local.minute) == (0, 0) else local.strftime("%Y-%m-%d %H:%M")


_PERIOD_WORDS = {"day": "today", "week": "this week", "month": "this month"}


def cap_line(name: str, paid: int, cap: int, period: str, resets_at: int | None, asset: Asset, now: int, zone: Any) -> str:
    """`news: 1.4 DUSD of 2 DUSD this month, resets 2027-01-01`, and with the site's display form
    `news: $1.40 (1.4 DUSD) of $2.00 (2 DUSD) ...`: a site names any sign, so the wallet's own unit
    stands beside it, as `_charged_text` does (docs/security.md, "The reader's budgets")."""
    from dataclasses import replace

    own = replace(asset, display=None)

    def money(amount: int) -> str:
        return _charged_text(amount, own, asset)

    words = _PERIOD_WORDS.get(period) or (f"in the last {period[:-1]} days" if period.endswith("d") else "this period")
    if resets_at is not None and resets_at <= now:
        return f"{name}: {money(0)} of {money(cap)} {words} (the last period ended {_when(resets_at, zone)})"
    resets = f", resets {_when(resets_at, zone)}" if resets_at is not None else ""
    full = " (reading on free)" if paid >= cap else ""
    return f"{name}: {money(paid)} of {money(cap)} {words}{resets}{full}"


def _receipt_lines(receipt: dict[str, Any] | None, asset: Asset, args: argparse.Namespace,
                   periods: dict[str, str] | None = None) -> list[str]:  # fmt: skip
    """The receipt's cap progress and the pass it bought, when it names them; `periods`: each cap's
    period as the site's offers named it (a receipt does not)."""
    import time

    if not isinstance(receipt, dict):
        return []
    from channel_node.client.wallet import _offered_cap

    lines, now, zone = [], int(time.time()), _zone(args)
    cap = _offered_cap(receipt.get("cap"))
    if cap is not None:
        period = cap.period or (periods or {}).get(cap.name, "")
        lines.append(cap_line(cap.name, cap.paid, cap.cap, period, cap.resets_at, asset, now, zone))
    bought = receipt.get("pass")
    if isinstance(bought, dict) and isinstance(bought.get("name"), str) and isinstance(bought.get("until"), int):
        lines.append(f"pass {bought['name'][:32]}: valid until {_when(bought['until'], zone)}")
    elif getattr(args, "passes", None) and not cap:
        lines.append(f"note: no pass named {', '.join(args.passes)} was bought with this page (the site does not sell it "
                     "here, or the wallet holds it already: `channel-node wallet sites`)")  # fmt: skip
    return lines


async def _sites(args: argparse.Namespace) -> int:
    """Per site: what it cost today and this month, its caps and the passes bought there. Reads the
    wallet's database (and the token's symbol, with --token); needs no password."""
    import time

    from rich.console import Console

    from channel_node.amounts import format_amount
    from channel_node.client import Policy, WalletStore, site_spending
    from channel_node.wire.channel import read_display

    database = _folder(args) / "wallet.db"
    if not database.exists():
        raise CliError(f"no wallet database at {database}")
    if args.token:
        from web3 import AsyncWeb3
        from web3.providers import AsyncHTTPProvider

        w3 = AsyncWeb3(AsyncHTTPProvider(args.rpc_url))
        try:
            asset = await _asset_for(w3, args.token)
        finally:
            await w3.provider.disconnect()
    else:
        from channel_node.amounts import ETH

        asset = ETH
    try:
        Policy(timezone=args.timezone)
    except ValueError as exc:
        raise CliError(str(exc).replace("timezone must", "--timezone must")) from None
    from datetime import UTC, datetime

    now, zone = int(time.time()), _zone(args)
    day = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")
    month = datetime.fromtimestamp(now, zone).strftime("%Y-%m")
    with WalletStore(database) as store:
        spending = site_spending(store, day, month)
    if _wants_json(args.json):
        print(json.dumps([{
            "site": s.site, "today": str(s.today), "month": s.month, "this_month": str(s.this_month),
            "caps": [{"name": c.name, "cap": str(c.cap), "paid": str(c.paid), "period": c.period, "resets_at": c.resets_at}
                     for c in s.caps],
            "passes": [{"name": n, "until": u, "valid": u > now} for n, u in s.passes],
        } for s in spending]))  # fmt: skip
        return 0
    console = Console()
    if not spending:
        console.print("no site paid yet", markup=False)
    for s in spending:
        shown = read_display({"display": s.display}, asset)
        console.print(f"{s.site}: {_charged_text(s.this_month, asset, shown)} this month ({s.month}), "
                      f"{format_amount(s.today, asset)} today", soft_wrap=True, markup=False)  # fmt: skip
        for c in s.caps:
            console.print("  " + cap_line(c.name, c.paid, c.cap, c.period, c.resets_at, shown, now, zone), soft_wrap=True, markup=False)
        for name, until in s.passes:
            state = f"valid until {_when(until, zone)}" if until > now else f"ended {_when(until, zone)}"
            console.print(f"  pass {name}: {state}", soft_wrap=True, markup=False)
    return 0


async def _unpaid(wallet: Wallet, result: Result) -> str | None:
    """Why a 402 was left unpaid, as one line saying what to do, or None when the status line
    (`402 URL: charged ... (code: message)`) says it (docs/operations.md, "When something goes
    wrong"). A channel the node does not know yet is explained from the chain: how many blocks its
    deposit has, and that the node waits for more."""
    from channel_node.wire.envelope import decode_header

    try:
        refusal = decode_header(result.headers["PAYMENT-REQUIRED"])
    except (KeyError, ValueError, TypeError):
        return None
    if refusal.get("error") == "channel_unknown":
        accepts = refusal.get("accepts")
        offer = accepts[0] if isinstance(accepts, list) and accepts and isinstance(accepts[0], dict) else {}
        return await _unconfirmed(wallet, offer)
    return None


async def _unconfirmed(wallet: Wallet, offer: dict[str, Any]) -> str | None:
    """`channel 0x.. is not confirmed yet ...` for the wallet's open channel with this offer's
    receiver and contract, from a chain read (head and the deposit's block); None if unknown."""
    from eth_utils.address import to_checksum_address

    from channel_node.chain.contract import ChannelDepositClient
    from channel_node.chain.logs import ChannelDeposited, ChannelOpened

    extra = offer.get("extra")
    if not isinstance(extra, dict):
        return None
    try:
        pay_to, contract = to_checksum_address(str(offer.get("payTo"))), to_checksum_address(str(extra.get("contract")))
    except ValueError:
        return None
    records = [r for r in wallet.channels() if r.status == "open" and to_checksum_address(r.receiver) == pay_to
               and to_checksum_address(r.contract) == contract]  # fmt: skip
    if not records:
        return None
    record = records[-1]
    try:
        head = await wallet.w3.eth.block_number
        client = ChannelDepositClient(wallet.w3, contract)
        events = await client.get_events(max(0, head - 10_000), "latest", kinds=[ChannelOpened, ChannelDeposited])
    except Exception:  # the status line stays the answer when the chain cannot be read
        return None
    blocks = [e.block_number for e in events if getattr(e, "channel_id", None) == record.channel_id]
    if not blocks:
        return (f"the site does not know channel {record.hex_id} and its deposit is not in the last 10,000 blocks of the "
                "chain at --rpc-url: is the wallet on the site's chain? (check --rpc-url)")  # fmt: skip
    deposit = blocks[-1]
    have = head - deposit + 1
    if have > 2:  # past the default depth: the node may wait for more, or has not read it again yet
        return (f"channel {record.hex_id} is not known to the site yet: the chain is at block {head}, the deposit at block "
                f"{deposit} ({have} confirmations); the site waits for its `confirmations` setting and re-reads an unknown "
                "channel every few seconds: run this again shortly, and if it persists, ask the site how deep it waits")  # fmt: skip
    return (f"channel {record.hex_id} is not confirmed yet: the chain is at block {head}, the deposit at block {deposit} "
            f"({have} confirmation{'s' if have != 1 else ''}) and the site waits for more (channel-node's `confirmations`, "
            "2 by default): is the chain producing blocks? (anvil: start it with --block-time 1); run this again once it has")  # fmt: skip


async def _channels(args: argparse.Namespace) -> int:
    async def channels(wallet: Wallet) -> tuple[list[Row], RenderableType | None]:
        return _channel_rows(wallet), None if _wants_json(args.json) else await _channel_view(wallet, _width())

    rows, view = await _with_wallet(args, channels)
    _table(rows, args.json, "channels", view)
    return 0


async def _balance(args: argparse.Namespace) -> int:
    async def balance(wallet: Wallet) -> tuple[Row, Row]:
        from eth_utils.address import to_checksum_address

        from channel_node.amounts import ETH, format_amount
        from channel_node.chain.erc20 import Erc20Client

        gas = await wallet.w3.eth.get_balance(to_checksum_address(wallet.address))
        asset = wallet.policy.asset
        unit = await _asset_for(wallet.w3, asset)
        rows = [r for r in _channel_rows(wallet) if r["asset"] == (asset or "ETH")]
        locked = sum(int(str(r["unspent"])) for r in rows if r["status"] != "settled")
        if asset is None:
            return ({"address": wallet.address, "balance": str(gas), "unspent_in_channels": str(locked)},
                    {"address": wallet.address, "balance": format_amount(gas, ETH),
                     "unspent_in_channels": format_amount(locked, ETH)})  # fmt: skip
        held = await Erc20Client(wallet.w3, asset).balance_of(wallet.address)
        return ({"address": wallet.address, "token": asset, "balance": str(held), "unspent_in_channels": str(locked),
                 "eth_for_gas": str(gas)},
                {"address": wallet.address, "token": asset, "balance": format_amount(held, unit),
                 "unspent_in_channels": format_amount(locked, unit), "eth_for_gas": format_amount(gas, ETH)})  # fmt: skip

    row, shown = await _with_wallet(args, balance)
    _table([row], args.json, "balance", _record_view("balance", shown))
    return 0


async def _topup(args: argparse.Namespace) -> int:
    from channel_node.amounts import format_amount

    async def topup(wallet: Wallet) -> tuple[Row, Row]:
        record = _find(wallet, args.channel)
        # The channel's own asset; an unknown channel is refused by top_up, in the wallet's asset meanwhile.
        asset = await _channel_asset(wallet, record)
        amount = _amount(args.amount, asset, "amount", args.base_units)
        if not amount:
            raise CliError(f"amount: a top-up adds something; give more than 0 {asset.symbol} (e.g. {asset.example})")
        from rich.console import Console

        with Console(stderr=True).status("depositing on chain ..."):
            record = await wallet.top_up(args.channel, amount)
        return ({"channel": record.hex_id, "deposited": str(record.deposited)},
                {"channel": record.hex_id, "added": format_amount(amount, asset),
                 "deposited": format_amount(record.deposited, asset)})  # fmt: skip

    row, shown = await _with_wallet(args, topup)
    _table([row], args.json, "topup", _record_view("topup", shown))
    return 0


async def _close(args: argparse.Namespace) -> int:
    from channel_node.amounts import format_amount
    from channel_node.chain.reverts import ContractRevert
    from channel_node.client import WalletError

    async def close(wallet: Wallet) -> tuple[Row, Row]:
        asset = await _channel_asset(wallet, _find(wallet, args.channel))
        if args.node:
            done = await wallet.close_via_node(args.channel, args.node)
            row: Row = {"channel": args.channel, "closed": "cooperatively", "refunded": str(done.refunded),
                        "paid_to_receiver": str(done.claimed)}  # fmt: skip
            return row, {**row, "refunded": format_amount(done.refunded, asset),
                         "paid_to_receiver": format_amount(done.claimed, asset)}  # fmt: skip
        ticket = await wallet.request_close(args.channel)
        row = {"channel": args.channel, "closed": "requested", "deadline": ticket.deadline, "warning": ticket.warning}
        return row, row

    try:  # a refusal is one line on stderr and exit 2, never a traceback
        result, shown = await _with_wallet(args, close, "closing the channel on chain ...")
    except ContractRevert as exc:
        raise CliError(_revert_line(exc)) from None
    except WalletError as exc:
        raise CliError(str(exc)) from None
    _table([result], args.json, "close", _record_view("close", shown))
    return 0


async def _finalize(args: argparse.Namespace) -> int:
    from channel_node.amounts import format_amount

    async def finalize(wallet: Wallet) -> tuple[Row, Row]:
        asset = await _channel_asset(wallet, _find(wallet, args.channel))
        done = await wallet.finalize(args.channel)
        return ({"channel": args.channel, "refunded": str(done.refunded), "paid_to_receiver": str(done.claimed)},
                {"channel": args.channel, "refunded": format_amount(done.refunded, asset),
                 "paid_to_receiver": format_amount(done.claimed, asset)})  # fmt: skip

    row, shown = await _with_wallet(args, finalize, "finalizing on chain ...")
    _table([row], args.json, "finalize", _record_view("finalize", shown))
    return 0


def _trust(args: argparse.Namespace) -> int:
    from channel_node.client import WalletStore, trust_site

    database = _folder(args) / "wallet.db"
    if not database.exists():
        raise CliError(f"no wallet database at {database}")
    with WalletStore(database) as store:
        reopened = trust_site(store, args.site)
    print(json.dumps({"site": args.site, "reopened": ["0x" + c.hex() for c in reopened]}))
    return 0


def _wants_json(as_json: bool) -> bool:
    return as_json or not sys.stdout.isatty()


def _width() -> int:
    from rich.console import Console

    return Console().width


def _record_view(title: str, shown: Row) -> RenderableType:
    from channel_node.cli.tables import record_table

    return record_table(title, {k: "" if v is None else str(v) for k, v in shown.items()})


def _table(rows: list[Row], as_json: bool, title: str, view: RenderableType | None = None) -> None:
    """JSON (base units, every field) for scripts and pipes; on a terminal, `view`: the amounts in
    the asset's unit, fitted to the terminal's width (cli/tables.py)."""
    if _wants_json(as_json) or view is None:
        print(json.dumps(rows if title == "channels" else rows[0]))
        return
    from rich.console import Console

    from channel_node.cli.tables import print_table

    print_table(Console(), view)


ANVIL_FUNDING = 10**18  # what the printed anvil command gives a new wallet: 1 ETH, plenty for a local chain


def funding_lines(address: str, args: argparse.Namespace) -> list[str]:
    """How to get ETH (and a token) onto a new wallet's address, as commands that work as printed
    (docs/getting-started.md, "Funding")."""
    import shlex

    from channel_node.cli.program import program

    where = (["--wallet", str(args.wallet)] if args.wallet else []) + ["--rpc-url", args.rpc_url]
    balance = " ".join([program(), "wallet", "balance", *(shlex.quote(w) for w in where)])
    call = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "anvil_setBalance", "params": [address, hex(ANVIL_FUNDING)]},
                      separators=(",", ":"))  # fmt: skip
    asset = f"the token {args.token} it pays with, and ETH for gas" if args.token else "ETH"
    return [
        f"Fund {address} before paying: it needs {asset} for its deposits (a channel locks --deposit-multiple",
        "prices, 50 by default: 0.001 ETH at 0.00002 ETH an article) and for the gas of opening and closing",
        "(0.01 ETH is plenty on a test network).",
        "  on a local anvil (gives it 1 ETH):",
        f"    curl -s -X POST -H 'Content-Type: application/json' --data '{call}' {shlex.quote(args.rpc_url)}",
        "  on a public test network: send it test ETH from a faucet or from an account you funded",
        "    (Sepolia faucets and what each address needs: docs/getting-started.md, \"Funding on a test network\")",
        f"  then check: {balance}",
    ]


def _new(args: argparse.Namespace) -> int:
    from channel_node.keys import KeystoreError, create_keystore, read_password

    try:
        address = create_keystore(_keystore(args), read_password(confirm=True))
    except KeystoreError as exc:
        raise CliError(str(exc)) from None
    print(address, flush=True)  # alone on stdout, so `ADDRESS=$(channel-node wallet new)` works
    print("\n".join(funding_lines(address, args)), file=sys.stderr, flush=True)
    return 0


def _import(args: argparse.Namespace) -> int:
    from channel_node.keys import KeystoreError, import_key, read_password

    try:
        text = Path(args.key_file).read_text() if args.key_file else sys.stdin.readline()
    except OSError as exc:
        raise CliError(f"cannot read --key-file {args.key_file}: {exc.strerror or exc} (a file holding the hex private key)") from None
    try:
        address = import_key(_keystore(args), read_password(confirm=True), text.strip())
    except KeystoreError as exc:
        raise CliError(str(exc)) from None
    print(address, flush=True)
    print("\n".join(funding_lines(address, args)), file=sys.stderr, flush=True)
    return 0


ASYNC: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "get": _get, "channels": _channels, "balance": _balance, "topup": _topup, "close": _close, "finalize": _finalize,
    "sites": _sites,
}  # fmt: skip
SYNC: dict[str, Callable[[argparse.Namespace], int]] = {"new": _new, "import": _import, "trust": _trust}


#: What to do when the contract refuses a wallet command (docs/operations.md, "When something goes wrong").
REVERT_HINTS = {
    "ChannelClosing": "its close is already requested: run `channel-node wallet finalize CHANNEL` after the close delay",
    "ChannelIsSettled": "it is settled already: nothing is left in it",
    "ChannelUnknown": "the contract has no such channel on this chain (check --rpc-url)",
    "NotPayer": "this wallet's key is not the channel's payer",
    "CloseNotRequested": "request the close first: `channel-node wallet close CHANNEL`",
    "CloseDelayNotOver": "wait until the close delay is over, then run the command again",
    "DepositLimitExceeded": "the contract caps one channel's deposit: add less",
    "ZeroDeposit": "give an amount above 0",
}


def _revert_line(exc: ContractRevert) -> str:
    hint = REVERT_HINTS.get(exc.error_name or "")
    return f"{exc}: {hint}" if hint else str(exc)


def _check_channel(text: str) -> None:
    """A channel id as typed: 0x and 64 hex digits, else a UsageError saying where to copy it from."""
    digits = text.removeprefix("0x")
    if len(digits) != 64 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise CliError(f"channel id {text[:80]!r} is not 0x followed by 64 hex digits: copy it from `channel-node wallet channels`")


def _handler(name: str) -> Callable[[argparse.Namespace], int]:
    def handle(args: argparse.Namespace) -> int:
        from channel_node.chain.reverts import ContractRevert
        from channel_node.cli.support import report_error, run_async

        try:
            if getattr(args, "channel", None) is not None:
                _check_channel(args.channel)
            if name in SYNC:
                return SYNC[name](args)
            return run_async(ASYNC[name](args))
        except ContractRevert as exc:  # a Refusal: one line and exit 2, with what to do
            return report_error(CliError(_revert_line(exc)))
        except ChannelNodeError as exc:  # one line, never a traceback (cli/support.py maps the exit code)
            return report_error(exc)

    return handle


def add_wallet_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    wallet = subparsers.add_parser("wallet", help="the reader's wallet: pay for content, manage channels")
    actions = wallet.add_subparsers(dest="wallet_action", required=True)
    specs = {
        "new": "create the wallet's main key (encrypted keystore)",
        "import": "import a main key from stdin or --key-file",
        "get": "fetch a URL, paying with a channel if it asks",
        "channels": "this wallet's channels",
        "balance": "on-chain balance and what is unspent in channels",
        "topup": "add to a channel's deposit",
        "close": "close a channel: cooperatively with --node URL, else request the unilateral close",
        "finalize": "after the close delay, take back what was never claimed",
        "trust": "pay a site again after the wallet blocked it for misbehaving",
        "sites": "per site: what it cost today and this month, its caps (paid of cap) and passes",
    }
    for name, help_text in specs.items():
        parser = actions.add_parser(name, help=help_text, aliases=["list"] if name == "channels" else [])
        parser.add_argument("--wallet", help=f"wallet folder (default {DEFAULT_FOLDER})")
        parser.add_argument("--rpc-url", default=os.environ.get("CHANNEL_NODE_RPC_URL", "http://127.0.0.1:8545"))
        parser.add_argument("--json", action="store_true", help="print JSON")
        parser.add_argument("--token", default=os.environ.get("CHANNEL_NODE_WALLET_TOKEN"),
                            help="pay in this ERC-20 token (address) instead of native ETH; amounts and limits are in its unit")
        parser.add_argument("--deposit-multiple", type=int, default=50, help="a new channel's deposit in prices (default 50)")
        parser.add_argument("--max-price", help="refuse to pay more than this for one request (e.g. 0.0001, 0.02DUSD)")
        parser.add_argument("--site-daily-limit", help="most to spend per site per day (e.g. 0.005)")
        parser.add_argument("--daily-limit", help="most to spend per day (e.g. 0.01)")
        parser.add_argument("--site-monthly-limit", help="most to spend per site per calendar month (e.g. 2)")
        parser.add_argument("--monthly-limit", help="your monthly budget: most to spend per calendar month, all sites (e.g. 10)")
        parser.add_argument("--timezone", help="the time zone months are counted in (IANA name, e.g. Europe/Paris; "
                                               "default: this machine's local time)")  # fmt: skip
        parser.add_argument("--pass", dest="passes", action="append", metavar="NAME",
                            help="buy this pass when a page's offer sells it and you hold none valid (repeatable)")
        parser.add_argument("--base-units", action="store_true",
                            help="read typed amounts as whole numbers of the asset's smallest unit (wei for ETH)")
        parser.set_defaults(handler=_handler(name))
        if name == "get":
            parser.add_argument("url")
            parser.add_argument("-o", "--output", help="save the content to this file instead of printing it")
            parser.add_argument("--scheme", choices=("exact", "channel"),
                                help="pay in this x402 scheme only (default: a channel once the site is a regular, "
                                     "else exact; docs/protocol.md, \"The wallet and `exact`\")")  # fmt: skip
        if name == "trust":
            parser.add_argument("site", help="the site as host[:port] (or a URL of it)")
        if name == "import":
            parser.add_argument("--key-file", help="file holding the hex private key (else read from stdin)")
        if name in ("topup", "close", "finalize"):
            parser.add_argument("channel", help="channel id (0x...)")
        if name == "topup":
            parser.add_argument("amount", help="amount to add in the channel's asset: 0.0005, 0.0005ETH, 0.02DUSD; "
                                               "base units with a suffix (20000wei, 20000base) or --base-units")
        if name == "close":
            parser.add_argument("--node", help="the channel-node's base URL, for a cooperative close")
