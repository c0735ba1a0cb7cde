"""EIP-712 hashing, signing and recovery that mirror contracts/ChannelDeposit.sol byte for byte.

Pure and synchronous: no web3, no I/O.
"""

from channel_node.signing.eip712 import (
    ChannelConfig,
    Domain,
    InvalidSignature,
    address_of_key,
    channel_id,
    cooperative_close_digest,
    keccak256,
    recover_signer,
    sign_digest,
    to_compact,
    voucher_digest,
)
from channel_node.signing.eip3009 import (
    TokenDomain,
    TransferAuthorization,
    recover_authorizer,
    sign_authorization,
    transfer_authorization_digest,
)

__all__ = [
    "ChannelConfig",
    "Domain",
    "InvalidSignature",
    "TokenDomain",
    "TransferAuthorization",
    "address_of_key",
    "channel_id",
    "cooperative_close_digest",
    "keccak256",
    "recover_authorizer",
    "recover_signer",
    "sign_authorization",
    "sign_digest",
    "to_compact",
    "transfer_authorization_digest",
    "voucher_digest",
]
