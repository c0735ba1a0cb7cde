// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {TestToken} from "./TestToken.sol";

/// Takes a fee of `feeBps` basis points on every transfer (burned).
contract FeeToken is TestToken {
    uint256 public immutable feeBps;

    constructor(uint256 feeBps_) TestToken("Fee Token") {
        feeBps = feeBps_;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        uint256 fee = amount * feeBps / 10_000;
        require(balanceOf[from] >= amount, "balance");
        balanceOf[from] -= amount;
        balanceOf[to] += amount - fee;
        totalSupply -= fee;
        emit Transfer(from, to, amount - fee);
    }
}

/// USDT-style: transfer and transferFrom return nothing.
contract NoReturnToken {
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;

    function mint(address to, uint256 amount) external {
        balanceOf[to] += amount;
    }

    function approve(address spender, uint256 amount) external {
        allowance[msg.sender][spender] = amount;
    }

    function transfer(address to, uint256 amount) external {
        require(balanceOf[msg.sender] >= amount, "balance");
        balanceOf[msg.sender] -= amount;
        balanceOf[to] += amount;
    }

    function transferFrom(address from, address to, uint256 amount) external {
        require(allowance[from][msg.sender] >= amount && balanceOf[from] >= amount, "denied");
        allowance[from][msg.sender] -= amount;
        balanceOf[from] -= amount;
        balanceOf[to] += amount;
    }
}

/// Returns false instead of reverting when it refuses; `failing` switches it on.
contract FalseToken is TestToken {
    bool public failing;

    constructor() TestToken("False Token") {}

    function setFailing(bool on) external {
        failing = on;
    }

    function transfer(address to, uint256 amount) external override returns (bool) {
        if (failing) return false;
        _transfer(msg.sender, to, amount);
        return true;
    }

    function transferFrom(address from, address to, uint256 amount) external override returns (bool) {
        if (failing) return false;
        _spendAllowance(from, amount);
        _transfer(from, to, amount);
        return true;
    }
}

/// Refuses transfers to blocklisted addresses, as regulated stablecoins do.
contract BlocklistToken is TestToken {
    mapping(address => bool) public blocked;

    constructor() TestToken("Blocklist Token") {}

    function setBlocked(address account, bool on) external {
        blocked[account] = on;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        require(!blocked[to] && !blocked[from], "blocked");
        super._transfer(from, to, amount);
    }
}

/// Calls `target` with `data` from inside transfer/transferFrom (an ERC-777-style hook) and bubbles
/// up a revert, so a test sees what the re-entered contract answered.
contract ReentrantToken is TestToken {
    address public target;
    bytes public data;

    constructor() TestToken("Reentrant Token") {}

    function arm(address target_, bytes calldata data_) external {
        target = target_;
        data = data_;
    }

    function _transfer(address from, address to, uint256 amount) internal override {
        address t = target;
        if (t != address(0)) {
            target = address(0); // once
            (bool ok, bytes memory ret) = t.call(data);
            if (!ok) {
                assembly {
                    revert(add(ret, 32), mload(ret))
                }
            }
        }
        super._transfer(from, to, amount);
    }
}
