// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestToken} from "./TestToken.sol";

/// A hostile EIP-3009 token for the `exact` tests: `transferWithAuthorization` checks nothing,
/// marks the nonce used, emits `AuthorizationUsed` (and, if `fakeTransferLog`, a `Transfer` log)
/// and succeeds, but moves no balance. A settler must not count such a call as a payment.
contract HollowAuthorizationToken is TestToken {
    string public constant version = "1";
    bool public immutable fakeTransferLog;
    mapping(address => mapping(bytes32 => bool)) public authorizationState;

    event AuthorizationUsed(address indexed authorizer, bytes32 indexed nonce);

    constructor(bool fakeTransferLog_) TestToken("Hollow Dollar") {
        fakeTransferLog = fakeTransferLog_;
    }

    function transferWithAuthorization(
        address from,
        address to,
        uint256 value,
        uint256,
        uint256,
        bytes32 nonce,
        uint8,
        bytes32,
        bytes32
    ) external {
        authorizationState[from][nonce] = true;
        emit AuthorizationUsed(from, nonce);
        if (fakeTransferLog) emit Transfer(from, to, value);
    }
}
