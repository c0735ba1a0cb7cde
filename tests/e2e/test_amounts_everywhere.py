"""Amounts for people everywhere a person types or reads one (issue 15, finding 5; docs/amounts.md):
the wallet's commands take `0.0005`, `0.0005ETH`, `500000000000000wei` and refuse more decimals than
the asset has in one line with exit 2; the wallet's and the operator's tables show whole amounts at
80 columns; `report` and the dashboard name the node's asset without flags; chart axes are plain
decimals with labels that fit.

The commands run through the real CLI (`channel_node.cli.main.main`) with the chain-facing part
replaced: a wallet object with channels in ETH and in a 6-decimals token, and a node whose admin
answers are the real JSON shapes."""

from __future__ import annotations

import asyncio
import re
import sys
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from channel_node.amounts import ETH, Asset, format_amount, format_number
from channel_node.chain.erc20 import Erc20Client
from channel_node.cli import channels as channels_cli
from channel_node.cli import wallet as wallet_cli
from channel_node.cli.main import main
from channel_node.cli.tables import FOLD, KEEP, SHORTEN, fitted_table, print_table
from channel_node.errors import RemoteError
from channel_node.insights import OFFER, UNLOCK, InsightsWriter
from channel_node.insights.charts import Money, bar_chart, line_chart, text_width
from channel_node.insights.schema import asset_of_file

TOKEN = "0x" + "d5" * 20
DUSD = Asset("DUSD", 6, TOKEN)
ETH_CHANNEL = "0x" + "e1" * 32
TOKEN_CHANNEL = "0x" + "d1" * 32
T0 = 1767571200  # Monday 2026-01-05 00:00 UTC


def record(channel: str, token: str | None, deposited: int, charged: int, status: str = "open") -> SimpleNamespace:
    config = SimpleNamespace(is_eth=token is None, token=bytes.fromhex(token[2:]) if token else b"\0" * 20,
                             receiver=b"\x70" * 20)  # fmt: skip
    return SimpleNamespace(hex_id=channel, config=config, deposited=deposited, signed=charged, charged=charged,
                           status=status, receiver="0x" + "70" * 20, close_deadline=None)  # fmt: skip


class FakeWallet:
    """What the wallet commands use of a `Wallet`: its channels (one in ETH, one in DUSD), its
    policy, and `top_up`, which records what it was asked to add."""

    def __init__(self, policy_asset: str | None = None) -> None:
        self.w3 = SimpleNamespace(provider=SimpleNamespace(endpoint_uri="fake://amounts"),
                                  eth=SimpleNamespace(contract=lambda **_: None))  # fmt: skip
        self.policy = SimpleNamespace(asset=policy_asset)
        self.records = [record(ETH_CHANNEL, None, 10**15, 4 * 10**13), record(TOKEN_CHANNEL, TOKEN, 1_000_000, 20_000)]
        self.added: list[int] = []

    def channels(self) -> list[SimpleNamespace]:
        return self.records

    async def top_up(self, channel: str, amount: int) -> SimpleNamespace:
        self.added.append(amount)
        found = next(r for r in self.records if r.hex_id == channel)
        found.deposited += amount
        return found


@pytest.fixture
def wallet(monkeypatch):
    """The wallet commands over a FakeWallet; the DUSD token answers symbol() and decimals()."""
    fake = FakeWallet()

    async def with_wallet(args, action, waiting=None):
        fake.policy.asset = args.token
        return await action(fake)

    async def metadata(self):
        return ("DUSD", 6)

    monkeypatch.setattr(wallet_cli, "_with_wallet", with_wallet)
    monkeypatch.setattr(Erc20Client, "metadata", metadata)
    return fake


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, re.sub(r"\x1b\[[0-9;]*m", "", out), err  # a terminal's styles aside


@pytest.mark.parametrize(
    ("typed", "extra", "added"),
    [("0.0005", [], 5 * 10**14), ("0.0005ETH", [], 5 * 10**14), ("0.0005 ETH", [], 5 * 10**14),
     ("500000000000000wei", [], 5 * 10**14), ("500000000000000", ["--base-units"], 5 * 10**14), ("1", [], 10**18)],
)  # fmt: skip
def test_wallet_topup_takes_amounts_in_eth_or_explicit_base_units(wallet, capsys, typed, extra, added):
    code, out, err = run(capsys, "wallet", "topup", ETH_CHANNEL, typed, *extra)
    assert (code, err) == (0, "") and wallet.added == [added]
    assert out.strip() == f'{{"channel": "{ETH_CHANNEL}", "deposited": "{10**15 + added}"}}'  # --json/pipes: base units


def test_wallet_topup_in_a_token_channel_takes_the_tokens_unit(wallet, capsys):
    assert run(capsys, "wallet", "topup", TOKEN_CHANNEL, "0.02")[0] == 0
    assert run(capsys, "wallet", "topup", TOKEN_CHANNEL, "0.5DUSD")[0] == 0
    assert run(capsys, "wallet", "topup", TOKEN_CHANNEL, "20000base")[0] == 0
    assert wallet.added == [20_000, 500_000, 20_000]


@pytest.mark.parametrize(
    ("channel", "typed", "extra", "why"),
    [(ETH_CHANNEL, "0.0000000000000000001", [], "more decimals than ETH has"),
     (TOKEN_CHANNEL, "0.0000001", [], "more decimals than DUSD has"),
     (ETH_CHANNEL, "1e-5", [], "exponent"),
     (ETH_CHANNEL, "0.02DUSD", [], "this asset is ETH"),
     (TOKEN_CHANNEL, "20000wei", [], "written with 'base'"),
     (ETH_CHANNEL, "0", [], "more than 0 ETH"),
     (ETH_CHANNEL, "0.5", ["--base-units"], "whole number of base units"),
     (ETH_CHANNEL, "-1", [], "sign")],
)  # fmt: skip
def test_wallet_topup_refuses_in_one_line_with_exit_2(wallet, capsys, channel, typed, extra, why):
    code, out, err = run(capsys, "wallet", "topup", channel, typed, *extra)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and wallet.added == []
    assert len(lines) == 1 and lines[0].startswith("error: ") and why in lines[0], err
    assert "Traceback" not in err


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10**24), st.integers(19, 30))
def test_wallet_refuses_every_amount_finer_than_a_wei(value, places):
    """The class of the finding's example: any decimal with more than 18 fraction digits (not all
    zeros beyond the 18th) is refused, never rounded to a wei."""
    text = f"{value // 10**places}.{str(value % 10**places).rjust(places, '0')}"
    if text.rstrip("0").partition(".")[2].__len__() <= 18:
        text += "1"  # a significant digit beyond the 18th
    with pytest.raises(wallet_cli.CliError, match="more decimals than ETH has"):
        wallet_cli._amount(text, ETH, "amount")


def test_wallet_limits_are_typed_in_the_wallets_asset(monkeypatch):
    args = SimpleNamespace(token=None, deposit_multiple=50, max_price="0.0001", site_daily_limit="0.005ETH",
                           daily_limit="10000000000000000wei", base_units=False)  # fmt: skip
    policy = wallet_cli._policy(args, ETH)
    assert (policy.per_request_limit, policy.per_site_daily_limit, policy.daily_limit) == (10**14, 5 * 10**15, 10**16)
    args.max_price = "0.0000001"
    with pytest.raises(wallet_cli.CliError, match="^--max-price: amount '0.0000001' has more decimals than DUSD"):
        wallet_cli._policy(SimpleNamespace(**{**vars(args), "token": TOKEN}), DUSD)


def test_the_wallets_own_messages_show_amounts_in_its_asset(tmp_path):
    from channel_node.client import Policy, SpendingLimitExceeded, Wallet, WalletStore

    key = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
    eth = Wallet(SimpleNamespace(), key, WalletStore(tmp_path / "eth.db"), Policy(per_request_limit=10**14, daily_limit=10**15))
    with pytest.raises(SpendingLimitExceeded, match=r"^price 0\.0002 ETH is above the per-request limit 0\.0001 ETH$"):
        eth._check_limits(None, 2 * 10**14, 2 * 10**14)
    with pytest.raises(SpendingLimitExceeded, match=r"paying 0\.0011 ETH .* above the daily limit 0\.001 ETH$"):
        eth._check_limits(None, 10**14, 11 * 10**14)
    token = Wallet(SimpleNamespace(), key, WalletStore(tmp_path / "dusd.db"), Policy(asset=TOKEN, per_request_limit=20_000))
    with pytest.raises(SpendingLimitExceeded, match=r"^price 30000 base units is above"):  # decimals not read yet
        token._check_limits(None, 30_000, 30_000)
    token.asset = DUSD  # what the CLI sets once it has read the token's symbol() and decimals()
    with pytest.raises(SpendingLimitExceeded, match=r"^price 0\.03 DUSD is above the per-request limit 0\.02 DUSD$"):
        token._check_limits(None, 30_000, 30_000)


def width_80(monkeypatch) -> None:
    """The commands print their tables as on a terminal of 80 columns."""
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)


def assert_fits_80(out: str) -> None:
    assert out.strip() and max(len(line) for line in out.splitlines()) <= 80, out


def test_wallet_list_at_80_columns_shows_whole_amounts(wallet, capsys, monkeypatch):
    width_80(monkeypatch)
    for command in ("list", "channels"):
        code, out, err = run(capsys, "wallet", command)
        assert (code, err) == (0, "")
        assert_fits_80(out)
        for amount in ("0.001", "0.00004", "0.00096", "0.98", "0.02", "DUSD", "ETH"):
            assert re.search(rf"(^|\s){re.escape(amount)}(\s|$)", out, re.M), (amount, out)
        ids = "".join(re.findall(r"^([0-9a-fx]+)\s", out, re.M))  # the folded ids, every character kept
        assert ETH_CHANNEL in ids and TOKEN_CHANNEL in ids, out


def test_wallet_topup_on_a_terminal_says_what_was_added(wallet, capsys, monkeypatch):
    width_80(monkeypatch)
    code, out, _ = run(capsys, "wallet", "topup", TOKEN_CHANNEL, "0.02")
    assert code == 0 and "0.02 DUSD" in out and "1.02 DUSD" in out
    assert_fits_80(out)


# ---------------------------------------------------------------------- the operator's commands


def channel_row(n: int, deposited: int, charged: int, claimed: int = 0) -> dict:
    """A row as the admin API lists it (server/admin/api.py, channel_json)."""
    return {"channelId": "0x" + f"{n:02x}" * 32, "payer": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "token": "0x" + "00" * 20, "deposited": str(deposited), "claimed": str(claimed),
            "maxClaimableAmount": str(charged), "charged": str(charged), "unclaimed": str(charged - claimed),
            "credit": str(deposited - charged), "status": "open"}  # fmt: skip


class FakeNode:
    poll_delay = 0.0

    def __init__(self, asset: Asset, rows: list[dict]) -> None:
        self._asset, self.rows, self.claimed_min = asset, rows, None

    async def list_channels(self, status=None, min_unclaimed=None):
        return [r for r in self.rows if min_unclaimed is None or int(r["unclaimed"]) >= int(min_unclaimed)]

    async def claim_all(self, minimum):
        self.claimed_min = minimum
        return {"queued": 0, "channels": [], "rejected": []}

    async def status(self):
        return {"status": "ok", "chainId": 31337, "head": 254, "gas": {"address": "0x" + "90" * 20, "balance": "990000000000000000",
                "needed": "1000000000000000"}, "totals": {"revenue": "60000", "deposited": "3000000",
                "outbox": {"pending": {"rows": 1, "amount": "20000"}}}}  # fmt: skip

    async def asset(self):
        return self._asset

    async def close(self):
        pass


@pytest.fixture
def node(monkeypatch):
    holder = SimpleNamespace(node=FakeNode(ETH, [channel_row(1, 10**15, 4 * 10**13, 2 * 10**13),
                                                 channel_row(2, 123_456_789_012_345_678, 1, 0)]))  # fmt: skip

    async def connect(args):
        return holder.node

    monkeypatch.setattr(channels_cli, "connect", connect)
    return holder


def test_channels_list_at_80_columns_shows_whole_amounts(node, capsys, monkeypatch):
    width_80(monkeypatch)
    code, out, err = run(capsys, "channels", "list")
    assert (code, err) == (0, "")
    assert_fits_80(out)
    assert "amounts in ETH" in out
    for amount in ("0.001", "0.00004", "0.00002", "0.00096", "0.123456789012345678", "0.000000000000000001"):
        assert re.search(rf"\s{re.escape(amount)}(\s|$)", out, re.M), (amount, out)


def test_channels_list_in_a_token_and_its_filters_in_the_tokens_unit(node, capsys, monkeypatch):
    node.node = FakeNode(DUSD, [channel_row(1, 2_000_000, 40_000, 0), channel_row(2, 1_000_000, 10_000, 0)])
    width_80(monkeypatch)
    code, out, _ = run(capsys, "channels", "list", "--min-unclaimed", "0.02")
    assert code == 0 and "amounts in DUSD" in out and "0.04" in out and "0.01" not in out
    assert_fits_80(out)
    code, out, _ = run(capsys, "channels", "claim", "--all", "--min", "0.03DUSD")
    assert code == 0 and node.node.claimed_min == 30_000
    assert run(capsys, "channels", "claim", "--all", "--min", "30000", "--base-units")[0] == 0
    assert node.node.claimed_min == 30_000
    code, _, err = run(capsys, "channels", "claim", "--all", "--min", "0.0000001")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--min: amount '0.0000001' has more decimals than DUSD" in err


def test_status_shows_the_nodes_amounts_and_gas_in_eth(node, capsys, monkeypatch):
    node.node = FakeNode(DUSD, [])
    width_80(monkeypatch)
    code, out, _ = run(capsys, "status")
    assert code == 0
    assert_fits_80(out)
    assert re.search(r"totals\.revenue\s.*0\.06 DUSD", out) and re.search(r"totals\.deposited\s.*3 DUSD", out)
    assert re.search(r"gas\.balance\s.*0\.99 ETH", out) and re.search(r"gas\.needed\s.*0\.001 ETH", out)
    assert re.search(r"totals\.outbox\.pending\.amount\s.*0\.02 DUSD", out) and re.search(r"head\s.*254", out)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 10**30), st.integers(0, 10**30)), min_size=1, max_size=4),
       st.sampled_from([ETH, DUSD, Asset("WBTC", 8, "0x" + "11" * 20)]), st.integers(60, 200))  # fmt: skip
def test_a_channel_list_never_cuts_an_amount(figures, asset, width):
    """Whatever the amounts (up to 10**30 base units: a trillion ETH) and the width, every amount
    appears whole on one line, and no line is wider than the terminal."""
    rows = [channel_row(n, deposited, charged) for n, (deposited, charged) in enumerate(figures)]
    for row in rows:
        row["credit"] = row["unclaimed"] = "0"
    console = Console(width=width, record=True, file=open("/dev/null", "w"))  # noqa: SIM115 (closed with the console)
    print_table(console, channels_cli._view("list", rows, asset, width))
    out = console.export_text()
    assert max(len(line) for line in out.splitlines()) <= width
    cells = out.replace("│", " ").split()
    for deposited, charged in figures:
        for value in (deposited, charged):
            assert format_number(value, asset.decimals) in cells, (value, out)


def test_tables_fold_or_shorten_only_ids():
    rows = [["0x" + "ab" * 32, "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "0.123456789012345678"]]
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    print_table(console, fitted_table("t", [("channel", FOLD), ("payer", SHORTEN), ("amount", KEEP)], rows, 80))
    out = console.export_text()
    assert "0.123456789012345678" in out and "…" in out and max(map(len, out.splitlines())) <= 80
    assert "".join(line.split()[0] for line in out.splitlines()[3:]) == "0x" + "ab" * 32


# ---------------------------------------------------------------------- report, dashboard, charts


def insights_file(path, asset: Asset | None, price: int) -> None:
    writer = InsightsWriter(path, asset=asset)
    writer.write([(OFFER, "/articles/a.html", price, {"section": "news"}, None, T0 + 60),
                  (UNLOCK, "/articles/a.html", price, {"section": "news"}, b"\x01" * 32, T0 + 120),
                  (UNLOCK, "/articles/b.html", price, {"section": "news"}, b"\x02" * 32, T0 + 180)])  # fmt: skip
    writer.close()


def report(capsys, *argv: str) -> str:
    code, out, err = run(capsys, "report", "--since", str(T0), "--until", str(T0 + 86400), *argv)
    assert code == 0, err
    return out


def test_report_without_flags_uses_the_asset_the_node_recorded(tmp_path, capsys):
    insights_file(tmp_path / "eth.db", ETH, 20_000_000_000_000)
    insights_file(tmp_path / "dusd.db", DUSD, 20_000)
    eth = report(capsys, "--insights", str(tmp_path / "eth.db"))
    assert "0.00004 ETH" in eth and "price (ETH)" in eth and re.search(r"\s0\.00002\s", eth)
    assert "40,000,000,000,000" not in eth and "20,000,000,000,000" not in eth
    dusd = report(capsys, "--insights", str(tmp_path / "dusd.db"))
    assert "0.04 DUSD" in dusd and "revenue (DUSD)" in dusd and re.search(r"\s0\.02\s", dusd)
    # The flags stay as overrides.
    assert "40,000 " in report(capsys, "--insights", str(tmp_path / "dusd.db"), "--decimals", "0", "--symbol", "base")
    assert "0.04 USD" in report(capsys, "--insights", str(tmp_path / "dusd.db"), "--symbol", "USD")


def test_report_at_80_columns_never_cuts_an_amount(tmp_path, capsys, monkeypatch):
    writer = InsightsWriter(tmp_path / "i.db", asset=ETH)
    prices = [20_000_000_000_000, 123_456_789_000_000, 5 * 10**15]
    writer.write([(kind, f"/articles/2026/01/a-rather-long-headline-number-{n}.html", prices[n % 3],
                   {"section": "news", "author": "ann"}, None if kind == OFFER else bytes([n + 1]) * 32, T0 + 60 * n + kind)
                  for n in range(12) for kind in (OFFER, UNLOCK)])  # fmt: skip
    writer.close()
    width_80(monkeypatch)
    out = re.sub(r"\x1b\[[0-9;]*m", "", report(capsys, "--insights", str(tmp_path / "i.db"), "--tag", "section:news"))
    assert_fits_80(out)
    cells = out.replace("│", " ").split()
    for amount in ("0.00002", "0.000123456789", "0.005"):
        assert amount in cells, (amount, out)
    assert "0.020573827156 ETH" in out  # the revenue: 4 x (0.00002 + 0.000123456789 + 0.005), exact


def test_report_of_a_file_without_an_asset(tmp_path, capsys):
    """A file written before the asset was recorded: base units, or ETH when --config has no token."""
    insights_file(tmp_path / "old.db", None, 20_000_000_000_000)
    assert asset_of_file(tmp_path / "old.db") is None
    assert "40,000,000,000,000" in report(capsys, "--insights", str(tmp_path / "old.db"))
    config = tmp_path / "node.toml"
    (tmp_path / "site").mkdir()
    config.write_text(f'insights_database = "{tmp_path / "old.db"}"\n[paywall]\ncontent_dir = "{tmp_path / "site"}"\n')
    assert "0.00004 ETH" in report(capsys, "--config", str(config))


def test_chart_axes_are_plain_decimals_and_their_labels_fit():
    money = Money.of(ETH)
    svg = line_chart([("01 Jan", 8 * 10**13), ("02 Jan", 3 * 10**13), ("03 Jan", 0)], "Revenue per day", money.short,
                     min_step=1)  # fmt: skip
    labels = re.findall(r"text-anchor='end' fill='[^']+'>([^<]+)</text>", svg)
    assert labels and all("e-" not in label and "e+" not in label for label in labels), labels
    assert "0.00008 ETH" in labels
    left = int(re.search(r"<line x1='(\d+)' y1='[\d.]+' x2='\d+' y2='[\d.]+' stroke='#e4e7eb'", svg).group(1))
    assert all(text_width(label) <= left - 6 for label in labels), (left, labels)
    bars = bar_chart([("/articles/a.html", 123_456_789_012_345), ("/b", 1)], "Top", money.short)
    values = re.findall(r"<text x='([\d.]+)' y='[\d.]+' font-size='12' fill='[^']+'>([^<]+)</text>", bars)
    assert ("0.000123 ETH" in [v for _, v in values]) and ("0.000000000000000001 ETH" in [v for _, v in values])
    assert all(float(x) + text_width(v, 12) <= 760 for x, v in values), values
    # Tiny amounts: ticks never fall between two base units.
    tiny = line_chart([("a", 3), ("b", 1)], "t", Money.of(DUSD).short, min_step=1)
    assert re.findall(r"text-anchor='end' fill='[^']+'>([^<]+)</text>", tiny) == ["0 DUSD", "0.000001 DUSD", "0.000002 DUSD",
                                                                                 "0.000003 DUSD"]  # fmt: skip


async def test_the_dashboard_shows_the_asset_its_file_records(tmp_path):
    from aiohttp.test_utils import TestClient, TestServer
    from pydantic import SecretStr

    from channel_node.server.admin import add_dashboard_routes, create_admin_app

    insights_file(tmp_path / "i.db", DUSD, 20_000)
    app = create_admin_app(SimpleNamespace(settings=SimpleNamespace(admin_token=SecretStr("t"))))
    add_dashboard_routes(app, tmp_path / "i.db")
    async with TestClient(TestServer(app)) as client:
        html = await (await client.get("/admin/insights", headers={"Authorization": "Bearer t"},
                                       params={"since": str(T0), "until": str(T0 + 86400)})).text()  # fmt: skip
    assert "0.04 DUSD" in html and "Amounts in DUSD." in html and "e-0" not in html


def test_a_receipt_line_names_the_asset():
    assert format_amount(20_000, DUSD) == "0.02 DUSD" and format_amount(2 * 10**13, ETH) == "0.00002 ETH"


def test_a_bad_token_or_a_failing_chain_is_one_line(capsys, monkeypatch):
    async def failing(self):
        raise ConnectionError("reset")

    with pytest.raises(wallet_cli.CliError, match="--token must be a token's address"):
        asyncio.run(wallet_cli._asset_for(FakeWallet().w3, "0x12"))
    monkeypatch.setattr(Erc20Client, "metadata", failing)
    with pytest.raises(RemoteError, match="cannot read token .* symbol and decimals .ConnectionError."):
        asyncio.run(wallet_cli._asset_for(FakeWallet().w3, TOKEN))
