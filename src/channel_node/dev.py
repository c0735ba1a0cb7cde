"""`channel-node dev`: the whole product on one machine with nothing to install.

Starts an in-process chain (eth-tester on py-evm), deploys ChannelDeposit, opens a demo reader's
channel, serves the bundled sample site with priced articles, pays for one article through HTTP to
prove the path works, and prints how to pay for the others with curl.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from channel_node.chain.devchain import DevChain
from channel_node.config import Settings, load_settings
from channel_node.server.protocol import payment_signature
from channel_node.signing import ChannelConfig, Domain, address_of_key, channel_id, keccak256, sign_digest, voucher_digest

ARTICLE_PRICE = 20_000_000_000_000  # wei: 0.00002 ETH, a few cents
DEMO_DEPOSIT = 100 * ARTICLE_PRICE
DEMO_VOUCHER_KEY = keccak256(b"channel-node dev demo voucher key")  # a dev-only key, public by design
ARTICLES = ["/articles/micropayments.html", "/articles/channels.html", "/articles/vouchers.html"]


def site_root() -> Path:
    return Path(str(resources.files("channel_node").joinpath("site")))


def dev_settings(
    database: Path, contract: str, receiver: str, host: str, port: int, claim_key: bytes, admin_token: str | None = None
) -> Settings:
    return load_settings(
        admin_token=admin_token,
        admin_port=0,
        insights_database=database.parent / "insights.db",
        claim_key=claim_key.hex(),  # the dev publisher's well-known key: it claims and defends
        contract=contract,
        receiver=receiver,
        database=database,
        host=host,
        port=port,
        confirmations=1,  # the in-process chain mines one final block per transaction
        paywall={
            "content_dir": site_root(),
            "free": ["/", "/index.html", "/static/*"],
            "prices": [{"path": "/articles/*", "price": ARTICLE_PRICE, "description": "an article of The Daily Channel"}],
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

    @property
    def channel(self) -> bytes:
        return channel_id(self.domain, self.config)

    def voucher_header(self, amount: int, first: bool = False) -> str:
        signature = sign_digest(DEMO_VOUCHER_KEY, voucher_digest(self.domain, self.channel, amount))
        return payment_signature(
            f"eip155:{self.domain.chain_id}", self.contract, self.channel, amount, signature,
            config=self.config if first else None,
        )  # fmt: skip


def create_world(database_dir: Path | None = None) -> DevWorld:
    """Deploys the contract and opens the demo reader's channel (one transaction each)."""
    chain = DevChain()
    deployer, publisher, reader = chain.accounts[0], chain.accounts[1], chain.accounts[2]
    contract = chain.deploy_channel_deposit(sender=deployer.address)
    config = ChannelConfig.create(
        payer=reader.address,
        signer=address_of_key(DEMO_VOUCHER_KEY),
        receiver=publisher.address,
        token=None,
        close_delay=3600,
        salt=1,
    )
    receipt = chain.transact(contract.functions.depositEth(config.as_abi_tuple()), reader.address, value=DEMO_DEPOSIT)
    if receipt["status"] != 1:
        raise RuntimeError("opening the demo channel failed")
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
    )


def instructions(world: DevWorld, base_url: str, paid_first: bool) -> list[str]:
    """What a newcomer types to pay for articles, with vouchers already signed for the demo reader."""
    lines = [
        f"chain        in-process eth-tester, chain id {world.domain.chain_id}",
        f"contract     {world.contract}",
        f"publisher    {world.receiver} (receives vouchers)",
        f"reader       {world.reader}, channel 0x{world.channel.hex()} with {DEMO_DEPOSIT} wei",
        f"database     {world.database}",
        "",
        "See the price of an article (HTTP 402, the offer in PAYMENT-REQUIRED and in the body):",
        f"  curl -i {base_url}{ARTICLES[1]}",
        "",
        "Pay for it with the reader's next voucher (a running total signed by the channel's voucher key):",
    ]
    already = 1 if paid_first else 0
    for n, path in enumerate(ARTICLES[1:], start=already + 1):
        header = world.voucher_header(n * ARTICLE_PRICE, first=(n == 1))
        lines.append(f"  curl -i -H 'PAYMENT-SIGNATURE: {header}' {base_url}{path}")
    lines += [
        "",
        "Re-reading a paid article is free with any voucher of the channel; a voucher that does not cover",
        "the next price gets a corrective 402 with the channel's state. Metrics: "
        f"{base_url}/metrics, health: {base_url}/healthz",
    ]
    return lines


__all__ = ["ARTICLES", "ARTICLE_PRICE", "DevWorld", "create_world", "dev_settings", "instructions"]
