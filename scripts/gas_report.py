#!/usr/bin/env python3
"""Measure the gas of every ChannelDeposit operation on the in-process chain (eth-tester, py-evm).

    python scripts/gas_report.py            # markdown table beside µRaiden's published figures
    python scripts/gas_report.py --json     # one JSON object {"operation": gas, ...}
    python scripts/gas_report.py --write    # also rewrite docs/gas.md

Every figure is the receipt's gasUsed (refunds applied) of one transaction in a warmed-up contract:
the contract already holds some of the token, as it does after its first deposit. `open_erc20_cold`
shows the first-ever token deposit, when the contract's balance slot is still empty.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from eth_utils import to_checksum_address

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from channel_node.dev.devchain import DevChain  # noqa: E402
from channel_node.signing import (  # noqa: E402
    ChannelConfig,
    Domain,
    channel_id,
    cooperative_close_digest,
    keccak256,
    sign_digest,
    to_compact,
    voucher_digest,
)
from contract_helpers import deploy_test_token, sign_permit  # noqa: E402

HOUR = 3600
BATCH_SIZES = (1, 2, 5, 10, 20)  # x402 `exact` sales per ExactBatcher transaction

# Targets from the issue and µRaiden's published figures (docs/design.md, "Gas is a feature"; None: no equivalent).
ROWS = [
    # key, description, target, µRaiden figure, µRaiden note
    ("open_eth", "open, ETH", 50_000, 88_976, "ERC223 open"),
    ("open_erc20", "open, ERC-20, after approve(amount)", 65_000, 120_090, "ERC20 approve + open"),
    ("open_erc20_infinite_allowance", "open, ERC-20, after approve(max)", None, None, ""),
    ("open_erc20_cold", "open, ERC-20, contract's first token deposit", None, None, ""),
    ("approve", "ERC-20 approve(amount) before an open (the token's, not ours)", None, None, ""),
    ("open_erc20_permit", "open, ERC-20 with EIP-2612 permit (one tx)", 100_000, 120_090, "approve + open"),
    ("topup_eth", "top-up, ETH", 35_000, 54_885, "ERC223 top-up"),
    ("topup_erc20", "top-up, ERC-20", None, 85_414, "ERC20 approve + top-up"),
    ("claim", "receiver claim without closing, ETH", 45_000, 72_525, "withdraw, first (42,589 later)"),
    ("claim_erc20", "receiver claim without closing, ERC-20", None, 72_525, "withdraw, first"),
    ("claim_by_authorizer", "claim sent by the receiver authorizer (cold receiver), ETH", None, None, ""),
    ("claim_batch_per_channel_50", "batched claim, per channel at 50 channels", 15_000, None, ""),
    ("close_receiver", "receiver close with voucher, refund to payer", 60_000, None, ""),
    ("close_cooperative", "cooperative close (payer sends, receiver signed)", 60_000, 71_182, "cooperative close"),
    ("request_close", "payer requests close", None, 53_876, "payer close"),
    ("finalize_close", "finalize after the close delay", None, 40_896, "settle"),
    ("request_plus_finalize", "request close + finalize", 70_000, 94_772, "close + settle"),
    ("transfer_with_authorization", "x402 `exact`: DemoDollar EIP-3009 transferWithAuthorization", None, None, ""),
    *[(f"exact_batch_per_item_{n}", f"x402 `exact` through ExactBatcher, per sale at {n} in one tx", None, None, "")
      for n in BATCH_SIZES],
]


class Bench:
    def __init__(self, named_authorizer: bool = True) -> None:
        self.named_authorizer = named_authorizer
        self.chain = DevChain()
        self.w3 = self.chain.w3
        accounts = self.chain.accounts
        self.deployer, self.receiver, self.payer = accounts[0], accounts[1], accounts[2]
        # Every channel names a receiver authorizer, as a node with a hot claim key and a cold
        # receiver opens them (docs/contract.md); the receiver still sends, unless a row says otherwise.
        self.authorizer = accounts[4]
        self.contract = self.chain.deploy_channel_deposit()
        self.domain = Domain(self.chain.chain_id, self.contract.address)
        self.token = deploy_test_token(self.chain)
        self.voucher_key = keccak256(b"gas-report voucher key")
        from channel_node.signing import address_of_key

        self.voucher_signer = to_checksum_address(address_of_key(self.voucher_key))
        self.salt = 0

    def config(self, token: str | None = None, payer=None) -> ChannelConfig:
        self.salt += 1
        return ChannelConfig.create(
            payer=(payer or self.payer).address,
            signer=self.voucher_signer,
            receiver=self.receiver.address,
            token=token,
            close_delay=HOUR,
            salt=self.salt,
            receiver_authorizer=self.authorizer.address if self.named_authorizer else None,
        )

    def gas(self, call, sender, value: int = 0) -> int:
        receipt = self.chain.transact(call, sender.address, value=value)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction reverted: {call.fn_name}")
        return receipt["gasUsed"]

    def voucher(self, config: ChannelConfig, amount: int) -> tuple[int, int, bytes, bytes]:
        """(voucher amount, claim amount, r, vs): a voucher for `amount`, of which 90% is claimed
        (what was charged; the rest is the payer's credit)."""
        return (amount, amount * 9 // 10, *self._voucher_signature(config, amount))

    def _voucher_signature(self, config: ChannelConfig, amount: int) -> tuple[bytes, bytes]:
        return to_compact(sign_digest(self.voucher_key, voucher_digest(self.domain, channel_id(self.domain, config), amount)))

    def open_eth(self, amount: int = 10**18) -> tuple[ChannelConfig, int]:
        config = self.config()
        return config, self.gas(self.contract.functions.depositEth(config.as_abi_tuple()), self.payer, value=amount)

    def run(self) -> dict[str, int]:
        f = self.contract.functions
        out: dict[str, int] = {}

        config, out["open_eth"] = self.open_eth()
        out["topup_eth"] = self.gas(f.depositEth(config.as_abi_tuple()), self.payer, value=10**17)
        # Claim twice: the receiver's first payout may create its balance; measure a steady-state one.
        self.gas(f.claim(config.as_abi_tuple(), *self.voucher(config, 10**15)), self.receiver)
        out["claim"] = self.gas(f.claim(config.as_abi_tuple(), *self.voucher(config, 2 * 10**15)), self.receiver)
        if self.named_authorizer:
            out["claim_by_authorizer"] = self.gas(
                f.claim(config.as_abi_tuple(), *self.voucher(config, 25 * 10**14)), self.authorizer
            )
        out["close_receiver"] = self.gas(
            f.closeByReceiver(config.as_abi_tuple(), *self.voucher(config, 3 * 10**15)), self.receiver
        )

        config, _ = self.open_eth()
        self.gas(f.claim(config.as_abi_tuple(), *self.voucher(config, 10**15)), self.receiver)
        close = sign_digest(self.receiver.private_key, cooperative_close_digest(self.domain, channel_id(self.domain, config), 5 * 10**15))
        out["close_cooperative"] = self.gas(f.closeCooperative(config.as_abi_tuple(), 5 * 10**15, b"", close), self.payer)

        config, _ = self.open_eth()
        out["request_close"] = self.gas(f.requestClose(config.as_abi_tuple()), self.payer)
        self.chain.time_travel(HOUR + 1)
        out["finalize_close"] = self.gas(f.finalizeClose(config.as_abi_tuple()), self.payer)
        out["request_plus_finalize"] = out["request_close"] + out["finalize_close"]

        # ERC-20: the very first deposit fills the contract's empty token-balance slot.
        token = self.token
        self.gas(token.functions.mint(self.payer.address, 10**24), self.deployer)
        self.gas(token.functions.approve(self.contract.address, 2**256 - 1), self.payer)
        config = self.config(token=token.address)
        out["open_erc20_cold"] = self.gas(f.depositToken(config.as_abi_tuple(), 10**18), self.payer)
        config = self.config(token=token.address)
        out["open_erc20_infinite_allowance"] = self.gas(f.depositToken(config.as_abi_tuple(), 10**18), self.payer)
        out["topup_erc20"] = self.gas(f.depositToken(config.as_abi_tuple(), 10**17), self.payer)
        # The wallet's flow: approve exactly the deposit, then open (the allowance returns to zero).
        out["approve"] = self.gas(token.functions.approve(self.contract.address, 10**18), self.payer)
        config = self.config(token=token.address)
        out["open_erc20"] = self.gas(f.depositToken(config.as_abi_tuple(), 10**18), self.payer)
        self.gas(f.claim(config.as_abi_tuple(), *self.voucher(config, 10**15)), self.receiver)
        out["claim_erc20"] = self.gas(f.claim(config.as_abi_tuple(), *self.voucher(config, 2 * 10**15)), self.receiver)

        # Permit: a payer that never approved the contract.
        permit_payer = self.chain.accounts[3]
        self.gas(token.functions.mint(permit_payer.address, 10**24), self.deployer)
        config = self.config(token=token.address, payer=permit_payer)
        deadline = 2**40
        r, vs = sign_permit(token, permit_payer, self.contract.address, 10**18, deadline)
        out["open_erc20_permit"] = self.gas(f.depositTokenWithPermit(config.as_abi_tuple(), 10**18, deadline, r, vs), permit_payer)

        out["claim_batch_per_channel_50"] = self.batch_claim(50)
        out["transfer_with_authorization"] = self.transfer_with_authorization()
        out.update(self.exact_batches())
        return out

    def exact_batches(self) -> dict[str, int]:
        """x402 `exact` sales through contracts/ExactBatcher.sol: n readers (n payers, each with a
        balance) pay the one payee (which already holds some) in one transaction; gas per sale."""
        from channel_node.chain.artifacts import demo_dollar_artifact, exact_batcher_artifact
        from channel_node.signing import TokenDomain, TransferAuthorization, address_of_key, sign_authorization

        artifact = demo_dollar_artifact()
        token = self.chain.deploy(artifact.abi, artifact.bytecode)
        batcher_artifact = exact_batcher_artifact()
        batcher = self.chain.deploy(batcher_artifact.abi, batcher_artifact.bytecode)
        domain = TokenDomain("Demo Dollar", "1", self.chain.chain_id, token.address)
        self.gas(token.functions.mint(self.receiver.address, 10**6), self.deployer)
        out: dict[str, int] = {}
        for n in BATCH_SIZES:
            items = []
            for i in range(n):
                key = keccak256(b"gas-report batch payer %d/%d" % (n, i))
                payer = to_checksum_address(address_of_key(key))
                self.gas(token.functions.mint(payer, 10**12), self.deployer)
                args = (payer, self.receiver.address, 10_000, 0, 2**40, keccak256(b"gas-report batch nonce %d/%d" % (n, i)))
                signature = sign_authorization(key, domain, TransferAuthorization(*args))
                items.append((*args, signature[64], signature[:32], signature[32:64]))
            receipt = self.chain.transact(batcher.functions.transferAll(token.address, items), self.authorizer.address,
                                          gas=10_000_000)  # fmt: skip
            if receipt["status"] != 1 or len(receipt["logs"]) != 3 * n:
                raise RuntimeError("the exact batch reverted or an item failed")
            out[f"exact_batch_per_item_{n}"] = receipt["gasUsed"] // n
        return out

    def transfer_with_authorization(self) -> int:
        """One x402 `exact` settlement (docs/protocol.md): the node's account submits the payer's
        EIP-3009 authorization to DemoDollar; the payee already holds some (its second payment)."""
        from channel_node.chain.artifacts import demo_dollar_artifact
        from channel_node.signing import TokenDomain, TransferAuthorization, sign_authorization

        artifact = demo_dollar_artifact()
        token = self.chain.deploy(artifact.abi, artifact.bytecode)
        payer = self.chain.accounts[5]
        self.gas(token.functions.mint(payer.address, 10**12), self.deployer)
        domain = TokenDomain("Demo Dollar", "1", self.chain.chain_id, token.address)
        gas = 0
        for i in range(2):
            args = (payer.address, self.receiver.address, 10_000, 0, 2**40, keccak256(b"gas-report nonce %d" % i))
            signature = sign_authorization(payer.private_key, domain, TransferAuthorization(*args))
            r, s, v = signature[:32], signature[32:64], signature[64]
            gas = self.gas(token.functions.transferWithAuthorization(*args, v, r, s), self.authorizer)
        return gas

    def batch_claim(self, n: int) -> int:
        f = self.contract.functions
        items = []
        for _ in range(n):
            config, _ = self.open_eth(10**16)
            items.append((to_checksum_address(config.payer), to_checksum_address(config.signer), config.close_delay,
                          config.salt, *self.voucher(config, 10**15)))  # fmt: skip
        eth = "0x" + "00" * 20
        authorizer = self.authorizer.address if self.named_authorizer else eth
        call = f.claimBatch(self.receiver.address, authorizer, eth, items)
        receipt = self.chain.transact(call, self.receiver.address, gas=15_000_000)
        if receipt["status"] != 1:
            raise RuntimeError("batch claim reverted")
        return receipt["gasUsed"] // n


def markdown(gas: dict[str, int]) -> str:
    lines = [
        "| operation | gas | target | µRaiden | µRaiden operation |",
        "|---|---:|---:|---:|---|",
    ]
    for key, description, target, uraiden, note in ROWS:
        mark = ""
        if target is not None:
            mark = " ✅" if gas[key] <= target else " ❌"
        lines.append(
            f"| {description} (`{key}`) | {gas[key]:,}{mark} | {f'{target:,}' if target else '—'} "
            f"| {f'{uraiden:,}' if uraiden else '—'} | {note or '—'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print one JSON object {operation: gas}")
    parser.add_argument("--write", action="store_true", help="rewrite the table in docs/gas.md")
    args = parser.parse_args()
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
    gas = Bench().run()
    if args.json:
        print(json.dumps(gas, sort_keys=True))
    else:
        print(markdown(gas))
    if args.write:
        write_docs(gas)
    return 0


def write_docs(gas: dict[str, int]) -> None:
    doc = ROOT / "docs" / "gas.md"
    text = doc.read_text()
    start, end = "<!-- gas-table:start -->", "<!-- gas-table:end -->"
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    doc.write_text(f"{head}{start}\n{markdown(gas)}\n{end}{tail}")
    (ROOT / "docs" / "gas.json").write_text(json.dumps(gas, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    sys.exit(main())
