"""`channel-node dev`: the whole product on one machine with nothing to install.

Starts an in-process chain (eth-tester on py-evm), deploys ChannelDeposit, opens a demo reader's
channel, serves the bundled sample site with priced articles, pays for one article through HTTP to
prove the path works, and prints how to pay for the others with curl.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from web3.types import TxReceipt

from channel_node.chain.artifacts import demo_dollar_artifact, exact_batcher_artifact
from channel_node.config import Settings, load_settings
from channel_node.dev.devchain import DevChain
from channel_node.signing import (
    ChannelConfig,
    Domain,
    address_of_key,
    channel_id,
    keccak256,
    sign_digest,
    voucher_digest,
)
from channel_node.wire.channel import payment_signature

ARTICLE_PRICE = 20_000_000_000_000  # wei: 0.00002 ETH, a few cents
TOKEN_ARTICLE_PRICE = 20_000  # DemoDollar units (6 decimals): 0.02 DUSD
DEMO_DEPOSIT_PRICES = 100  # the demo channel's deposit, in article prices
READER_TOKENS = 1_000 * 10**6  # the reader's DUSD: enough for the demo channel and a wallet's own
DEMO_VOUCHER_KEY = keccak256(b"channel-node dev demo voucher key")  # a dev-only key, public by design
ARTICLES = ["/articles/micropayments.html", "/articles/channels.html", "/articles/vouchers.html"]


@contextmanager
def run_folder(data_dir: Path | None, keep: bool = False, say: Callable[[str], None] = print) -> Iterator[Path]:
    """The folder of one `dev` run (databases, the reader's wallet): `data_dir` when given (the
    user's: it stays), else a new temporary folder that is removed when the run ends, however it
    ends, unless `keep`."""
    if data_dir is not None:
        yield data_dir
        return
    folder = Path(tempfile.mkdtemp(prefix="channel-node-dev-"))
    try:
        yield folder
    finally:
        if keep:
            say(f"kept {folder} (remove it when done)")
        else:
            shutil.rmtree(folder, ignore_errors=True)
            say(f"removed the temporary folder {folder} (--keep keeps it, --data-dir DIR uses yours)")


def site_root() -> Path:
    return Path(str(resources.files("channel_node").joinpath("site")))


def article_price(token: str | None) -> int:
    return ARTICLE_PRICE if token is None else TOKEN_ARTICLE_PRICE


def dev_settings(world: DevWorld, host: str, port: int, admin_token: str | None = None) -> Settings:
    return load_settings(
        token=world.token,
        admin_token=admin_token,
        admin_port=0,
        insights_database=world.database.parent / "insights.db",
        claim_key=world.receiver_key.hex(),  # the dev publisher's well-known key: it claims and defends
        contract=world.contract,
        receiver=world.receiver,
        database=world.database,
        host=host,
        port=port,
        confirmations=1,  # the in-process chain mines one final block per transaction
        # Priced in DemoDollar (an EIP-3009 token), the site also sells under x402's `exact`, so the
        # official x402 clients can pay it (docs/protocol.md, "The `exact` scheme (node)").
        exact={"enabled": world.token is not None, "batch_contract": world.batcher},
        paywall={
            "content_dir": site_root(),
            "free": ["/", "/index.html", "/static/*"],
            "prices": [{"path": "/articles/*", "price": world.price, "description": "an article of The Daily Channel"}],
        },
    )


@dataclass
class DevWorld:
    chain: DevChain
    contract: str
    receiver: str
    receiver_key: bytes
    reader: str
    reader_key: bytes
    config: ChannelConfig
    domain: Domain
    database: Path
    token: str | None = None  # the DemoDollar contract when the site is priced in it
    batcher: str | None = None  # an ExactBatcher, when exact sales are batched (`dev --token --exact-batcher`)

    @property
    def price(self) -> int:
        return article_price(self.token)

    @property
    def deposit(self) -> int:
        return DEMO_DEPOSIT_PRICES * self.price

    def amount(self, units: int) -> str:
        """`units` of the site's asset as a reader reads them."""
        if self.token is None:
            return f"{units} wei"
        return f"{units} DUSD units ({units / 10**6:.2f} DUSD)"

    @property
    def channel(self) -> bytes:
        return channel_id(self.domain, self.config)

    def voucher_header(self, amount: int, first: bool = False) -> str:
        signature = sign_digest(DEMO_VOUCHER_KEY, voucher_digest(self.domain, self.channel, amount))
        return payment_signature(
            f"eip155:{self.domain.chain_id}", self.contract, self.channel, amount, signature,
            config=self.config if first else None,
        )  # fmt: skip


def create_world(database_dir: Path | None = None, token: bool = False, batcher: bool = False) -> DevWorld:
    """Deploys the contract and opens the demo reader's channel. With `token`, the site is priced in
    DemoDollar, a stand-in stablecoin deployed here, and the reader holds some; with `batcher` too,
    an ExactBatcher, through which the node sends the exact sales open at once together."""
    chain = DevChain()
    deployer, publisher, reader = chain.accounts[0], chain.accounts[1], chain.accounts[2]
    contract = chain.deploy_channel_deposit(sender=deployer.address)
    dollar = None
    if token:
        artifact = demo_dollar_artifact()
        dollar = chain.deploy(artifact.abi, artifact.bytecode, sender=deployer.address)
        _require(chain.transact(dollar.functions.mint(reader.address, READER_TOKENS), deployer.address), "minting DUSD")
    batch = None
    if batcher and dollar is not None:
        spec = exact_batcher_artifact()
        batch = chain.deploy(spec.abi, spec.bytecode, sender=deployer.address)
    config = ChannelConfig.create(
        payer=reader.address,
        signer=address_of_key(DEMO_VOUCHER_KEY),
        receiver=publisher.address,
        token=None if dollar is None else dollar.address,
        close_delay=3600,
        salt=1,
    )
    deposit = DEMO_DEPOSIT_PRICES * article_price(None if dollar is None else dollar.address)
    if dollar is None:
        opened = chain.transact(contract.functions.depositEth(config.as_abi_tuple()), reader.address, value=deposit)
    else:
        _require(chain.transact(dollar.functions.approve(contract.address, deposit), reader.address), "approving DUSD")
        opened = chain.transact(contract.functions.depositToken(config.as_abi_tuple(), deposit), reader.address)
    _require(opened, "opening the demo channel")
    folder = database_dir or Path(tempfile.mkdtemp(prefix="channel-node-dev-"))
    return DevWorld(
        chain=chain,
        contract=contract.address,
        receiver=publisher.address,
        receiver_key=publisher.private_key,
        reader=reader.address,
        reader_key=reader.private_key,
        config=config,
        domain=Domain(chain.chain_id, contract.address),
        database=folder / "node.db",
        token=None if dollar is None else dollar.address,
        batcher=None if batch is None else batch.address,
    )


def _require(receipt: TxReceipt, what: str) -> None:
    if receipt["status"] != 1:
        raise RuntimeError(f"{what} failed on the dev chain")


def instructions(world: DevWorld, base_url: str, paid_first: bool) -> list[str]:
    """What a newcomer types to pay for articles, with vouchers already signed for the demo reader."""
    lines = [
        f"chain        in-process eth-tester, chain id {world.domain.chain_id}",
        f"contract     {world.contract}",
        f"publisher    {world.receiver} (receives vouchers)",
        *([f"token        {world.token} (DemoDollar, a stand-in stablecoin: 6 decimals, dev chain only)"] if world.token else []),
        *([f"batcher      {world.batcher} (ExactBatcher: exact sales open at once share one transaction)"]
          if world.batcher else []),
        f"reader       {world.reader}, channel 0x{world.channel.hex()} with {world.amount(world.deposit)}",
        f"database     {world.database}",
        "",
        "See the price of an article (HTTP 402, the offer in PAYMENT-REQUIRED and in the body):",
        f"  curl -i {base_url}{ARTICLES[1]}",
        "",
        "Pay for it with the reader's next voucher (a running total signed by the channel's voucher key):",
    ]
    already = 1 if paid_first else 0
    for n, path in enumerate(ARTICLES[1:], start=already + 1):
        header = world.voucher_header(n * world.price, first=(n == 1))
        lines.append(f"  curl -i -H 'PAYMENT-SIGNATURE: {header}' {base_url}{path}")
    lines += [
        "",
        "Re-reading a paid article is free with any voucher of the channel; a voucher that does not cover",
        "the next price gets a corrective 402 with the channel's state. Metrics: "
        f"{base_url}/metrics, health: {base_url}/healthz",
    ]
    if world.token is not None:
        lines += [
            "",
            "The 402 also offers x402's `exact` scheme (an EIP-3009 authorization of DemoDollar, settled by",
            f"this node): any x402 client holding DUSD pays it; the reader {world.reader} holds some.",
        ]
    return lines


def operator_lines(admin_url: str, admin_token: str, program: str) -> list[str]:
    """The admin API, the operator commands and the revenue dashboard (dev records insights)."""
    return [
        "",
        f"Operator: admin API {admin_url}/admin, token {admin_token} (a new one each run), e.g.",
        f"  CHANNEL_NODE_ADMIN_TOKEN={admin_token} {program} channels list --admin-url {admin_url}",
        f"Dashboard: the revenue insights of this run at {admin_url}/admin/insights",
        f"  (log in at {admin_url}/admin/insights/login with the token above)",
    ]


def reader_lines(world: DevWorld, base_url: str, rpc_url: str, wallet: Path, program: str) -> list[str]:
    """The reader's wallet command that buys an article on the dev chain, as it works when pasted."""
    # A token site also offers x402 `exact`, which the wallet would pick for a first visit
    # (docs/protocol.md, "The wallet and `exact`"): the command asks for the channel it announces.
    token = f" --scheme channel --token {world.token}" if world.token else ""
    lines = [
        "",
        f"Reader: the chain answers JSON-RPC at {rpc_url}. A reader wallet with the dev reader's key is in",
        f"{wallet} (password: dev). Buy an article with it (it opens its own channel first):",
        f"  CHANNEL_NODE_KEYSTORE_PASSWORD=dev {program} wallet get {base_url}{ARTICLES[2]} "
        f"--wallet {shlex.quote(str(wallet))} --rpc-url {rpc_url}{token}",
    ]
    if world.token:
        lines.append("  (or, without a channel, one signature per article: --scheme exact)")
    return lines


__all__ = ["ARTICLES", "ARTICLE_PRICE", "TOKEN_ARTICLE_PRICE", "DevWorld", "create_world", "dev_settings", "instructions",
           "operator_lines", "reader_lines", "run_folder"]
