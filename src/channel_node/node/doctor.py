"""`channel-node doctor`'s rules: what a configuration must satisfy end to end, as a pure function
from what was observed (the chain's answers, the files, the database's pin) to one verdict per check
(docs/operations.md, "Checking a configuration: doctor").

Nothing here does I/O: `cli/doctor.py` gathers an `Observations` and prints `diagnose(...)`'s lines.
Every failing check says what to do, in one line, naming the setting or the command that fixes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from channel_node.amounts import ETH, format_amount

#: The gas of the costliest transaction a defence of a payer's close sends: a claim (ETH, ERC-20,
#: by the receiver authorizer) or a receiver close, from docs/gas.json (tests/e2e/test_doctor.py
#: keeps this figure equal to the table's).
DEFENCE_GAS = 53_793

#: Chains a newcomer meets, by id, to name them in the output.
KNOWN_CHAINS = {1: "Ethereum mainnet", 11155111: "Sepolia", 17000: "Holesky", 560048: "Hoodi", 31337: "anvil/hardhat",
                84532: "Base Sepolia", 8453: "Base", 10: "OP Mainnet", 11155420: "OP Sepolia"}  # fmt: skip


class Verdict(Enum):
    OK = "ok"
    FIX = "FIX"
    SKIPPED = "--"  # not checked: what it needs failed above


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    text: str  # what was seen (ok), or what is wrong and what to do (FIX)

    def line(self) -> str:
        return f"{self.verdict.value:<4}{self.name:<12}{' '.join(self.text.split())}"


@dataclass(frozen=True)
class ClaimKey:
    """The claim key as the configuration names it: where it is, and its address once opened."""

    source: str  # "keystore claim.json" or "claim_key"
    address: str | None = None  # checksum; None when it did not open
    error: str | None = None  # why it did not open (safe to show: no password or key)


@dataclass(frozen=True)
class Heads:
    """Two reads of the chain's head a bounded interval apart."""

    first: int
    last: int
    waited: float  # seconds between the reads
    seconds_per_block: float | None = None  # from the blocks' timestamps, when the head moved


@dataclass(frozen=True)
class Pinned:
    """A database's pin (store/sqlite.py's `meta` table), as stored: hex without 0x, or None when
    the database does not exist yet (the node pins it at its first start)."""

    chain_id: str | None = None
    contract: str | None = None
    receiver: str | None = None
    error: str | None = None  # the file exists but its pin cannot be read


@dataclass
class Observations:
    rpc_url: str  # for display: without credentials (hosted endpoints carry keys in the path)
    chain_id: int | None = None
    rpc_error: str | None = None
    expected_chain_id: int | None = None  # `--chain-id`: the chain the operator means
    contract: str | None = None  # the configured address (checksum)
    code_matches: bool | None = None  # the runtime code equals the committed artifact's (immutables masked)
    has_code: bool | None = None
    domain_matches: bool | None = None  # domainSeparator() equals the one computed for (chain id, contract)
    domain_error: str | None = None
    token: str | None = None  # the configured ERC-20 (checksum); None: native ETH
    token_has_code: bool | None = None
    token_symbol: str | None = None  # as the token answers symbol(), when it does
    token_decimals: int | None = None
    receiver: str | None = None  # checksum
    claim: ClaimKey | None = None
    gas_balance: int | None = None  # wei on the claim key
    max_fee: int | None = None  # wei per gas a transaction pays now
    heads: Heads | None = None
    confirmations: int = 2
    admin_token: bool = False
    content_dir: str | None = None
    content_dir_ok: bool | None = None
    upstream: str | None = None
    upstream_answer: str | None = None  # "HTTP 200", or None when it did not answer
    upstream_error: str | None = None
    database: str = "channel-node.db"
    pinned: Pinned = field(default_factory=Pinned)
    program: str = "channel-node"  # how the commands a FIX names are typed here (cli/program.py)


_PUSH32 = 0x7F


def same_code(deployed: bytes, artifact: bytes) -> bool:
    """Whether `deployed` (a chain's runtime code) is `artifact` (solc's `deployedBytecode`) with
    its immutables filled in: solc leaves each immutable as `PUSH32` of 32 zero bytes in the
    artifact, and the constructor writes the value there; every other byte must be equal."""
    if len(deployed) != len(artifact) or not artifact:
        return False
    masked = bytearray(deployed)
    at = artifact.find(bytes([_PUSH32]) + bytes(32))
    while at != -1:
        masked[at + 1 : at + 33] = bytes(32)
        at = artifact.find(bytes([_PUSH32]) + bytes(32), at + 33)
    return bytes(masked) == artifact


def eth(wei: int) -> str:
    """Exact decimal ETH (no float): `0.0005 ETH` (amounts.py, the one place amounts are shown)."""
    return format_amount(wei, ETH)


def chain_name(chain_id: int) -> str:
    name = KNOWN_CHAINS.get(chain_id)
    return f"{chain_id} ({name})" if name else str(chain_id)


def _rpc(o: Observations) -> Check:
    if o.chain_id is None:
        return Check("rpc", Verdict.FIX, f"no answer from {o.rpc_url} ({o.rpc_error or 'no chain id'}): start the chain "
                     "or set `rpc_url` (CHANNEL_NODE_RPC_URL) to a JSON-RPC endpoint that answers")  # fmt: skip
    if o.expected_chain_id is not None and o.chain_id != o.expected_chain_id:
        return Check("rpc", Verdict.FIX, f"{o.rpc_url} is chain {chain_name(o.chain_id)}, not the chain "
                     f"{chain_name(o.expected_chain_id)} you asked for: set `rpc_url` to an endpoint of chain "
                     f"{o.expected_chain_id}")  # fmt: skip
    return Check("rpc", Verdict.OK, f"{o.rpc_url} answers: chain id {chain_name(o.chain_id)}")


def _contract(o: Observations) -> Check:
    deploy = f"deploy it with `{o.program} deploy --rpc-url URL --keystore KEY` and set `contract` to the address it prints"
    if o.contract is None:
        return Check("contract", Verdict.FIX, f"`contract` is not set: {deploy}")
    if o.chain_id is None:
        return Check("contract", Verdict.SKIPPED, "not checked: the chain did not answer")
    if not o.has_code:
        return Check("contract", Verdict.FIX, f"no contract at {o.contract} on chain {chain_name(o.chain_id)} "
                     f"(wrong address, or deployed on another chain): {deploy}")  # fmt: skip
    if not o.code_matches:
        return Check("contract", Verdict.FIX, f"the code at {o.contract} is not this version of ChannelDeposit: {deploy}")
    if not o.domain_matches:
        why = f" ({o.domain_error})" if o.domain_error else ""
        return Check("contract", Verdict.FIX, f"{o.contract} answers another EIP-712 domain than chain "
                     f"{o.chain_id} and its own address{why}: {deploy}")  # fmt: skip
    return Check("contract", Verdict.OK, f"ChannelDeposit at {o.contract} (code and EIP-712 domain match)")


def _asset(o: Observations) -> Check:
    if o.token is None:
        return Check("asset", Verdict.OK, "native ETH (prices and deposits in wei; unset `token` means ETH)")
    if o.chain_id is None:
        return Check("asset", Verdict.SKIPPED, "not checked: the chain did not answer")
    if not o.token_has_code:
        return Check("asset", Verdict.FIX, f"no contract at token {o.token} on chain {chain_name(o.chain_id)}: set "
                     "`token` to the ERC-20's address on this chain, or remove it to be paid in native ETH")  # fmt: skip
    if o.token_decimals is None:
        return Check("asset", Verdict.OK, f"token {o.token} (it does not answer decimals(): amounts show in its base units)")
    return Check("asset", Verdict.OK, f"token {o.token_symbol or '(no symbol)'} at {o.token}, {o.token_decimals} decimals")


def _receiver(o: Observations) -> Check:
    if o.receiver is None:
        return Check("receiver", Verdict.FIX, "`receiver` is not set: set it to the address vouchers pay "
                     "(a cold address of yours; the claim key claims for it)")  # fmt: skip
    return Check("receiver", Verdict.OK, f"{o.receiver} receives the payouts")


def _claim_key(o: Observations) -> Check:
    new = f"create one with `{o.program} keys new --keystore claim.json` and set `claim_keystore = \"claim.json\"`"
    if o.claim is None:
        return Check("claim key", Verdict.FIX, f"no `claim_keystore` (or `claim_key`): the node can neither claim nor "
                     f"defend a payer's close; {new}")  # fmt: skip
    if o.claim.address is None:
        return Check("claim key", Verdict.FIX, f"{o.claim.source} does not open: {o.claim.error}; fix the file or "
                     "the password (CHANNEL_NODE_KEYSTORE_PASSWORD)")  # fmt: skip
    if o.receiver is not None and o.claim.address.lower() == o.receiver.lower():
        role = "it is the receiver (a hot receiver key; a separate claim key lets the receiver stay cold)"
    else:
        role = "the receiver authorizer of the channels this node opens (docs/operations.md)"
    return Check("claim key", Verdict.OK, f"{o.claim.address} from {o.claim.source}: {role}")


def defence_cost(max_fee: int) -> int:
    """What one defence costs at `max_fee` wei per gas, in wei."""
    return DEFENCE_GAS * max_fee


def _gas(o: Observations) -> Check:
    if o.claim is None or o.claim.address is None:
        return Check("gas", Verdict.SKIPPED, "not checked: no claim key")
    if o.gas_balance is None or o.max_fee is None:
        return Check("gas", Verdict.SKIPPED, "not checked: the chain did not answer")
    cost = defence_cost(o.max_fee)
    if o.gas_balance < cost:
        return Check("gas", Verdict.FIX, f"the claim key {o.claim.address} holds {eth(o.gas_balance)}, less than one "
                     f"defence costs ({DEFENCE_GAS:,} gas x {o.max_fee:,} wei = {eth(cost)}): send it at least "
                     f"{eth(10 * cost)} (docs/getting-started.md, \"Funding\")")  # fmt: skip
    covered = o.gas_balance // cost if cost else None
    many = f"about {covered:,} defences" if covered is not None else "defences (the chain charges no fee)"
    return Check("gas", Verdict.OK, f"{eth(o.gas_balance)} on the claim key: {many} at {o.max_fee:,} wei per gas")


def _blocks(o: Observations) -> Check:
    if o.heads is None:
        return Check("blocks", Verdict.SKIPPED, "not checked: the chain did not answer")
    h = o.heads
    if h.last <= h.first:
        stuck = f"no new block in {h.waited:.0f} s (head {h.last})"
        if o.confirmations <= 1:
            return Check("blocks", Verdict.OK, f"{stuck}; with confirmations = 1 a deposit confirms in its own block")
        return Check("blocks", Verdict.FIX, f"{stuck}, so `confirmations = {o.confirmations}` is never reached and no "
                     "deposit confirms: the chain must produce blocks on its own (anvil: --block-time 1), or set "
                     "`confirmations = 1` on a dev chain that mines per transaction")  # fmt: skip
    pace = f"a block every {h.seconds_per_block:.3g} s" if h.seconds_per_block else f"{h.last - h.first} block(s) in {h.waited:.1f} s"
    wait = f", a deposit confirms in about {h.seconds_per_block * o.confirmations:.3g} s" if h.seconds_per_block else ""
    return Check("blocks", Verdict.OK, f"{pace} (head {h.last}); confirmations = {o.confirmations}{wait}")


def _admin(o: Observations) -> Check:
    if not o.admin_token:
        return Check("admin", Verdict.FIX, "no `admin_token`: the operator commands (`channels`, `status`) and the "
                     "dashboard are off; set `admin_token` (or CHANNEL_NODE_ADMIN_TOKEN) to a long random secret, "
                     "e.g. the output of `openssl rand -hex 24`")  # fmt: skip
    return Check("admin", Verdict.OK, "admin_token is set (operator commands and the dashboard are on)")


def _content(o: Observations) -> Check:
    if o.content_dir is not None:
        if not o.content_dir_ok:
            return Check("content", Verdict.FIX, f"paywall.content_dir {o.content_dir} is not a directory: create it "
                         "(the files the node sells) or point `paywall.content_dir` at yours")  # fmt: skip
        return Check("content", Verdict.OK, f"serving files from {o.content_dir}")
    if o.upstream_answer is None:
        return Check("content", Verdict.FIX, f"paywall.upstream {o.upstream} does not answer ({o.upstream_error or 'no answer'}): "
                     "start the origin server or fix `paywall.upstream`")  # fmt: skip
    return Check("content", Verdict.OK, f"upstream {o.upstream} answers ({o.upstream_answer})")


def _database(o: Observations) -> Check:
    p = o.pinned
    if p.error is not None:
        if o.database.startswith(("postgresql://", "postgres://")):  # shown without its password (describe_database)
            return Check("database", Verdict.FIX, f"{o.database} cannot be read ({p.error}): check that the server "
                         "runs and the URL's user, password and database name")  # fmt: skip
        return Check("database", Verdict.FIX, f"{o.database} cannot be read as a channel-node database ({p.error}): "
                     "point `database` at a new file")  # fmt: skip
    if p.chain_id is None and p.contract is None and p.receiver is None:
        return Check("database", Verdict.OK, f"{o.database} is new: the node pins it to this chain, contract and receiver at its first start")
    if o.chain_id is None or o.contract is None or o.receiver is None:
        return Check("database", Verdict.SKIPPED, "not checked: the chain id, `contract` or `receiver` is unknown")
    wanted = {"chain_id": str(o.chain_id), "contract": o.contract.lower().removeprefix("0x"),
              "receiver": o.receiver.lower().removeprefix("0x")}  # fmt: skip
    stored = {"chain_id": p.chain_id, "contract": p.contract, "receiver": p.receiver}
    wrong = [key for key in wanted if (stored[key] or "").lower() != wanted[key]]
    if wrong:
        said = ", ".join(f"{key} {stored[key]} (configured: {wanted[key]})" for key in wrong)
        return Check("database", Verdict.FIX, f"{o.database} belongs to {said}: set `database` to a new file for this "
                     "deployment, or fix `rpc_url`/`contract`/`receiver` to the ones it was made for")  # fmt: skip
    return Check("database", Verdict.OK, f"{o.database} is pinned to this chain, contract and receiver")


def diagnose(o: Observations) -> list[Check]:
    """One check per item, in the order a newcomer fixes them."""
    return [_rpc(o), _contract(o), _asset(o), _receiver(o), _claim_key(o), _gas(o), _blocks(o), _admin(o), _content(o), _database(o)]


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed, 2 when something must be fixed (docs/design.md, "Errors")."""
    return 0 if all(c.verdict is Verdict.OK for c in checks) else 2


def summary(checks: list[Check]) -> str:
    fixes = sum(c.verdict is Verdict.FIX for c in checks)
    if not fixes and all(c.verdict is Verdict.OK for c in checks):
        return f"all {len(checks)} checks pass"
    return f"{fixes} of {len(checks)} checks need a fix (FIX lines above; -- lines wait on them)"


__all__ = ["DEFENCE_GAS", "Check", "ClaimKey", "Heads", "Observations", "Pinned", "Verdict", "defence_cost", "diagnose",
           "exit_code", "same_code", "summary"]  # fmt: skip
