// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// A contract account that forwards calls (so it can be a payer or receiver) and accepts ETH.
contract Forwarder {
    function exec(address target, bytes calldata data) external payable returns (bytes memory) {
        (bool ok, bytes memory ret) = target.call{value: msg.value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
        return ret;
    }

    receive() external payable virtual {}
}

/// Rejects every ETH payment.
contract RejectingAccount is Forwarder {
    receive() external payable override {
        revert("no ETH, thanks");
    }
}

/// Burns all gas it is given when paid.
contract GasBurningAccount is Forwarder {
    receive() external payable override {
        while (true) {}
    }
}

/// EIP-1271 wallet: a signature is valid when `owner` signed the hash (65-byte ECDSA).
contract ERC1271Wallet is Forwarder {
    address public immutable owner;
    bool public honest = true;

    constructor(address owner_) {
        owner = owner_;
    }

    function setHonest(bool on) external {
        honest = on;
    }

    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4) {
        if (!honest || signature.length != 65) return 0xffffffff;
        bytes32 r = bytes32(signature[0:32]);
        bytes32 s = bytes32(signature[32:64]);
        uint8 v = uint8(signature[64]);
        return ecrecover(hash, v, r, s) == owner ? bytes4(0x1626ba7e) : bytes4(0xffffffff);
    }
}
