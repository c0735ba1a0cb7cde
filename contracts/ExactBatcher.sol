// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// The one function of EIP-3009 the batcher calls (the v, r, s overload every EIP-3009 token has).
interface IERC3009 {
    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256 validAfter,
        uint256 validBefore,
        bytes32 nonce,
        uint8 v,
        bytes32 r,
        bytes32 s
    ) external;
}

/// Submits several EIP-3009 authorizations of one token in one transaction, so x402 `exact` sales
/// share the transaction's base cost (docs/protocol.md, "The `exact` scheme (node)", and docs/gas.md).
///
/// Each item is the payer's signed authorization as the token checks it: the token moves `value`
/// from `from` to `to` itself, so nothing passes through this contract, which holds no funds, no
/// allowance, no owner and no state, and anyone may call it. One item that fails (its nonce used or
/// cancelled, its window closed, the balance short, a bad signature) is caught and reported, never
/// reverting the others: `ItemOutcome(index, success)` says which, in item order. `success` means
/// only that the token's call returned; whether value moved is the token's Transfer log and balances
/// (a settler checks those, docs/security.md).
contract ExactBatcher {
    struct Item {
        address from;
        address to;
        uint256 value;
        uint256 validAfter;
        uint256 validBefore;
        bytes32 nonce;
        uint8 v;
        bytes32 r;
        bytes32 s;
    }

    event ItemOutcome(uint256 index, bool success);

    function transferAll(address token, Item[] calldata items) external {
        // A high-level call reverts the whole batch if `token` has no code: no item "succeeds"
        // against an address that cannot move anything.
        IERC3009 t = IERC3009(token);
        for (uint256 i = 0; i < items.length; ++i) {
            Item calldata it = items[i];
            bool ok;
            try t.transferWithAuthorization(
                it.from, it.to, it.value, it.validAfter, it.validBefore, it.nonce, it.v, it.r, it.s
            ) {
                ok = true;
            } catch {
                ok = false; // the revert data is not copied: a token cannot bloat the batch's memory
            }
            emit ItemOutcome(i, ok);
        }
    }
}
