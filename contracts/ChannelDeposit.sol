// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title ChannelDeposit: one contract holding every one-way payment channel.
/// @notice A payer locks ETH or an ERC-20 token for a receiver. The payer's voucher key signs
/// cumulative vouchers off-chain (EIP-712 `Voucher(channelId, maxClaimableAmount)`): a voucher is a
/// ceiling, not a payment. The receiver (or the channel's receiver authorizer, a hot key it names in
/// the configuration) settles on-chain only when it wants to: claim (single or batched), close, or a
/// cooperative close, each time naming the total it claims, which is at most the voucher; whatever is
/// not claimed goes back to the payer at every close. A payer leaves by requesting a close and
/// finalizing after the close delay; until finalization the receiver may still claim.
///
/// Channel state is one storage slot: deposited (108 bits) | claimed (108 bits) | closeDeadline (40 bits).
/// The configuration travels in calldata and is hashed into the channel id, so it is never stored.
///
/// Rules chosen where the design leaves a choice (see docs/contract.md):
///  - A voucher above the deposit is clamped to the deposit; the rest stays claimable after a top-up.
///  - A top-up during a pending close reverts (ChannelClosing): the close request stands.
///  - A settled channel keeps its slot (closeDeadline = SETTLED) and can never be reopened, so its
///    vouchers are worthless forever; a payer opens a new channel with a new salt.
///  - Payouts to the other party run with bounded gas; if one fails it is credited for a later
///    `withdrawPending`, so neither side can lock the other's funds.
contract ChannelDeposit {
    // ------------------------------------------------------------------ types

    /// Everything that identifies a channel; `channelId = EIP-712 hash of this struct`.
    struct ChannelConfig {
        address payer; // funds the channel, receives refunds, may request a close
        address signer; // plain key that signs vouchers (never a contract: EIP-1271 wallets can revoke)
        address receiver; // is paid by vouchers
        address token; // address(0) for native ETH
        uint32 closeDelay; // seconds between a payer's close request and its finalization
        uint96 salt; // lets the same parties hold several channels
        address receiverAuthorizer; // may claim, close and consent for the receiver; address(0): nobody
    }

    /// One channel of a batched claim; receiver and token are shared by the whole batch.
    struct BatchClaim {
        address payer;
        address signer;
        uint32 closeDelay;
        uint96 salt;
        uint128 voucherAmount; // the voucher's maxClaimableAmount (what the signature covers)
        uint128 claimAmount; // the total to have claimed, at most voucherAmount
        bytes32 r; // EIP-2098 compact signature
        bytes32 vs;
    }

    // ------------------------------------------------------------------ constants

    uint256 public constant MIN_CLOSE_DELAY = 15 minutes;
    uint256 public constant MAX_CLOSE_DELAY = 30 days;
    /// Largest amount a channel can hold (108 bits, about 3.2e32 base units).
    uint256 public constant MAX_AMOUNT = (1 << 108) - 1;
    /// Gas forwarded to a payout whose recipient is not the caller (griefing bound).
    uint256 public constant COUNTERPARTY_PAYOUT_GAS = 100_000;

    bytes32 public constant CHANNEL_TYPEHASH = keccak256(
        "Channel(address payer,address signer,address receiver,address token,uint32 closeDelay,uint96 salt,address receiverAuthorizer)"
    );
    bytes32 public constant VOUCHER_TYPEHASH = keccak256("Voucher(bytes32 channelId,uint128 maxClaimableAmount)");
    bytes32 public constant COOPERATIVE_CLOSE_TYPEHASH =
        keccak256("CooperativeClose(bytes32 channelId,uint128 claimAmount)");
    bytes32 private constant _DOMAIN_TYPEHASH =
        keccak256("EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)");
    bytes32 private constant _NAME_HASH = keccak256("ChannelDeposit");
    bytes32 private constant _VERSION_HASH = keccak256("1");

    uint256 private constant _SETTLED = (1 << 40) - 1;
    uint256 private constant _HALF_CURVE_ORDER = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;
    uint256 private constant _AMOUNT_MASK = (1 << 108) - 1;
    bytes32 private constant _S_MASK = bytes32(uint256((1 << 255) - 1)); // EIP-2098: top bit of vs is v - 27
    bytes4 private constant _ERC1271_MAGIC = 0x1626ba7e;

    // ------------------------------------------------------------------ state

    uint256 private immutable _cachedChainId;
    bytes32 private immutable _cachedDomainSeparator;
    /// Optional launch-safety cap on one channel's total deposit; MAX_AMOUNT when uncapped.
    uint256 public immutable maxDepositPerChannel;

    mapping(bytes32 channelId => uint256 packed) private _channels;
    /// Payouts that could not be delivered, by token then account, for `withdrawPending`.
    mapping(address token => mapping(address account => uint256)) public pendingPayouts;

    // The reentrancy lock lives in transient storage slot 0 (EIP-1153; nothing else uses transient storage).

    // ------------------------------------------------------------------ events

    event ChannelOpened(
        bytes32 indexed channelId,
        address indexed payer,
        address indexed receiver,
        address signer,
        address token,
        uint32 closeDelay,
        uint96 salt,
        address receiverAuthorizer,
        uint256 deposited
    );
    event ChannelDeposited(bytes32 indexed channelId, uint256 amount, uint256 totalDeposited);
    event ChannelClaimed(bytes32 indexed channelId, uint256 totalClaimed);
    event CloseRequested(bytes32 indexed channelId, uint256 deadline);
    /// Emitted once when a channel ends (any kind of close); `refunded` went back to the payer.
    event ChannelSettled(bytes32 indexed channelId, uint256 totalClaimed, uint256 refunded);
    event PayoutDeferred(address indexed token, address indexed account, uint256 amount);
    event PendingWithdrawn(address indexed token, address indexed account, address to, uint256 amount);

    // ------------------------------------------------------------------ errors

    error Reentrancy();
    error InvalidConfig();
    error ZeroDeposit();
    error WrongValue();
    error DepositLimitExceeded();
    error TokenTransferFailed();
    error ChannelUnknown();
    error ChannelClosing();
    error ChannelIsSettled();
    error NothingToClaim();
    error InvalidSignature();
    error NotPayer();
    error NotReceiver();
    error ClaimAboveVoucher();
    error CloseNotRequested();
    error CloseDelayNotOver();
    error NothingPending();

    constructor(uint256 maxDeposit) {
        _cachedChainId = block.chainid;
        _cachedDomainSeparator = _buildDomainSeparator();
        maxDepositPerChannel = maxDeposit == 0 || maxDeposit > MAX_AMOUNT ? MAX_AMOUNT : maxDeposit;
    }

    modifier nonReentrant() {
        assembly ("memory-safe") {
            if tload(0) {
                mstore(0x00, 0xab143c06) // Reentrancy()
                revert(0x1c, 0x04)
            }
            tstore(0, 1)
        }
        _;
        assembly ("memory-safe") {
            tstore(0, 0)
        }
    }

    // ------------------------------------------------------------------ deposits (open and top-up)

    /// Opens the channel (first deposit) or tops it up, with native ETH. Anyone may fund any channel;
    /// unspent funds always go back to `c.payer`.
    /// No reentrancy guard: it makes no external call, and state it reads is already final when any
    /// other function pays out (checks-effects-interactions).
    function depositEth(ChannelConfig calldata c) external payable {
        if (c.token != address(0)) revert WrongValue();
        _credit(c, msg.value);
    }

    /// Opens or tops up an ERC-20 channel from the caller's approved balance. Credits what actually
    /// arrived (balance difference), so fee-on-transfer tokens are accounted for exactly.
    function depositToken(ChannelConfig calldata c, uint256 amount) external nonReentrant {
        _credit(c, _pullToken(c.token, amount));
    }

    /// `depositToken` with an EIP-2612 permit in the same transaction; the permit signature is passed
    /// EIP-2098 compact (r, vs), like every signature here. A permit that fails (for example because
    /// someone front-ran it) is ignored when the allowance is already in place.
    function depositTokenWithPermit(ChannelConfig calldata c, uint256 amount, uint256 deadline, bytes32 r, bytes32 vs)
        external
        nonReentrant
    {
        address token = c.token;
        assembly ("memory-safe") {
            // permit(owner, spender, value, deadline, v, r, s); the outcome is deliberately ignored.
            let ptr := mload(0x40)
            mstore(ptr, 0xd505accf00000000000000000000000000000000000000000000000000000000)
            mstore(add(ptr, 0x04), caller())
            mstore(add(ptr, 0x24), address())
            mstore(add(ptr, 0x44), amount)
            mstore(add(ptr, 0x64), deadline)
            mstore(add(ptr, 0x84), add(shr(255, vs), 27))
            mstore(add(ptr, 0xa4), r)
            mstore(add(ptr, 0xc4), shr(1, shl(1, vs)))
            pop(call(gas(), token, 0, ptr, 0xe4, 0, 0))
        }
        _credit(c, _pullToken(token, amount));
    }

    // ------------------------------------------------------------------ receiver settlement

    /// Pays the receiver so that its claimed total becomes `claimAmount` (clamped to the deposit),
    /// without closing. `voucherAmount` is the signed ceiling that authorises it: `claimAmount` may be
    /// anything up to it (what the receiver actually charged), and the rest stays the payer's. Only
    /// the receiver or its authorizer may claim: a third party could otherwise claim a payer's unspent
    /// credit for the receiver. Works while a close is pending and never restarts the payer's close timer.
    function claim(ChannelConfig calldata c, uint128 voucherAmount, uint128 claimAmount, bytes32 r, bytes32 vs)
        external
        nonReentrant
    {
        _requireReceiverSide(c.receiver, c.receiverAuthorizer);
        if (claimAmount > voucherAmount) revert ClaimAboveVoucher();
        bytes32 id = channelId(c);
        uint256 packed = _channels[id];
        uint256 claimedBefore = _claimed(packed);
        uint256 claimedAfter = _claimTarget(packed, claimAmount);
        if (claimedAfter <= claimedBefore) revert NothingToClaim();
        _verifyVoucher(c.signer, id, voucherAmount, r, vs);
        _channels[id] = _withClaimed(packed, claimedAfter);
        emit ChannelClaimed(id, claimedAfter);
        _pay(c.token, c.receiver, claimedAfter - claimedBefore);
    }

    /// Claims many channels of one receiver, authorizer and token with a single payout; the caller
    /// must be that receiver or that (nonzero) authorizer. A channel that has nothing new to claim
    /// (already claimed, settled or unknown, including one whose configuration names another
    /// authorizer, which hashes to another id) is skipped, so a payer's close cannot make a batch
    /// fail; an invalid signature or a claim above its voucher reverts the batch.
    function claimBatch(address receiver, address receiverAuthorizer, address token, BatchClaim[] calldata items)
        external
        nonReentrant
    {
        _requireReceiverSide(receiver, receiverAuthorizer);
        uint256 total;
        uint256 n = items.length;
        for (uint256 i; i < n; ++i) {
            BatchClaim calldata item = items[i];
            if (item.claimAmount > item.voucherAmount) revert ClaimAboveVoucher();
            bytes32 id = _channelId(item.payer, item.signer, receiver, token, item.closeDelay, item.salt, receiverAuthorizer);
            uint256 packed = _channels[id];
            if (packed == 0 || _closeDeadline(packed) == _SETTLED) continue;
            uint256 claimedBefore = _claimed(packed);
            uint256 claimedAfter = _min(item.claimAmount, _deposited(packed));
            if (claimedAfter <= claimedBefore) continue;
            _verifyVoucher(item.signer, id, item.voucherAmount, item.r, item.vs);
            _channels[id] = _withClaimed(packed, claimedAfter);
            emit ChannelClaimed(id, claimedAfter);
            unchecked {
                total += claimedAfter - claimedBefore; // each term < 2**108, n is bounded by gas
            }
        }
        if (total == 0) revert NothingToClaim();
        _pay(token, receiver, total);
    }

    /// The receiver (or its authorizer) ends the channel, claiming `claimAmount` under a voucher for
    /// `voucherAmount` (or nothing new: claimAmount 0 or at most what is already claimed, no
    /// signature needed); everything not claimed is refunded to the payer at once.
    function closeByReceiver(ChannelConfig calldata c, uint128 voucherAmount, uint128 claimAmount, bytes32 r, bytes32 vs)
        external
        nonReentrant
    {
        _requireReceiverSide(c.receiver, c.receiverAuthorizer);
        if (claimAmount > voucherAmount) revert ClaimAboveVoucher();
        bytes32 id = channelId(c);
        uint256 packed = _channels[id];
        uint256 claimedBefore = _claimed(packed);
        uint256 claimedAfter = _claimTarget(packed, claimAmount);
        if (claimedAfter > claimedBefore) {
            _verifyVoucher(c.signer, id, voucherAmount, r, vs);
        } else {
            claimedAfter = claimedBefore;
        }
        _settle(c, id, packed, claimedBefore, claimedAfter);
    }

    /// Ends the channel at once at an agreed total. Both sides consent: the payer is the caller or
    /// signed `CooperativeClose(channelId, claimAmount)` (ECDSA, or EIP-1271 for contract accounts);
    /// the receiver side is the receiver or its authorizer, as the caller or as the signer.
    /// The payer's unspent credit is refunded immediately.
    function closeCooperative(
        ChannelConfig calldata c,
        uint128 claimAmount,
        bytes calldata payerSignature,
        bytes calldata receiverSignature
    ) external nonReentrant {
        bytes32 id = channelId(c);
        bytes32 digest = _hashTypedData(_amountStructHash(COOPERATIVE_CLOSE_TYPEHASH, id, claimAmount));
        if (msg.sender != c.payer && !_isValidSignature(c.payer, digest, payerSignature)) revert InvalidSignature();
        if (!_receiverConsents(c.receiver, c.receiverAuthorizer, digest, receiverSignature)) revert InvalidSignature();
        uint256 packed = _channels[id];
        uint256 claimedBefore = _claimed(packed);
        uint256 claimedAfter = _claimTarget(packed, claimAmount);
        if (claimedAfter < claimedBefore) claimedAfter = claimedBefore; // claims are never undone
        _settle(c, id, packed, claimedBefore, claimedAfter);
    }

    /// The receiver side of a cooperative close: the receiver or a nonzero authorizer, as the caller
    /// or as the signer of `digest`.
    function _receiverConsents(address receiver, address authorizer, bytes32 digest, bytes calldata signature)
        private
        view
        returns (bool)
    {
        if (msg.sender == receiver) return true;
        if (authorizer != address(0) && msg.sender == authorizer) return true;
        if (_isValidSignature(receiver, digest, signature)) return true;
        return authorizer != address(0) && _isValidSignature(authorizer, digest, signature);
    }

    /// Claims and receiver closes come from the receiver or its nonzero authorizer only.
    function _requireReceiverSide(address receiver, address authorizer) private view {
        if (msg.sender != receiver && (authorizer == address(0) || msg.sender != authorizer)) revert NotReceiver();
    }

    // ------------------------------------------------------------------ payer exit

    /// Starts the close delay. The receiver can still claim with its best voucher until finalization.
    function requestClose(ChannelConfig calldata c) external {
        if (msg.sender != c.payer) revert NotPayer();
        bytes32 id = channelId(c);
        uint256 packed = _channels[id];
        _requireOpen(packed);
        uint256 deadline = block.timestamp + c.closeDelay;
        _channels[id] = (packed & ~(_SETTLED << 216)) | (deadline << 216);
        emit CloseRequested(id, deadline);
    }

    /// After the close delay anyone may finalize: unclaimed funds go back to the payer.
    function finalizeClose(ChannelConfig calldata c) external nonReentrant {
        bytes32 id = channelId(c);
        uint256 packed = _channels[id];
        uint256 deadline = _closeDeadline(packed);
        if (deadline == _SETTLED) revert ChannelIsSettled();
        if (deadline == 0) revert CloseNotRequested();
        if (block.timestamp < deadline) revert CloseDelayNotOver();
        uint256 claimed_ = _claimed(packed);
        _settle(c, id, packed, claimed_, claimed_);
    }

    /// Withdraws payouts that could not be delivered earlier, to an address of the owner's choosing.
    function withdrawPending(address token, address to) external nonReentrant {
        uint256 amount = pendingPayouts[token][msg.sender];
        if (amount == 0) revert NothingPending();
        pendingPayouts[token][msg.sender] = 0;
        emit PendingWithdrawn(token, msg.sender, to, amount);
        if (!_transferOut(token, to, amount, gasleft())) revert TokenTransferFailed();
    }

    // ------------------------------------------------------------------ views

    function channelId(ChannelConfig calldata c) public view returns (bytes32) {
        return _channelIdOf(c);
    }

    /// Channel state. `closeDeadline` is 0 while open, a timestamp while a close is pending.
    function getChannel(bytes32 id)
        external
        view
        returns (uint256 deposited, uint256 claimed, uint256 closeDeadline, bool settled)
    {
        uint256 packed = _channels[id];
        uint256 deadline = _closeDeadline(packed);
        settled = deadline == _SETTLED;
        return (_deposited(packed), _claimed(packed), settled ? 0 : deadline, settled);
    }

    function domainSeparator() public view returns (bytes32) {
        return block.chainid == _cachedChainId ? _cachedDomainSeparator : _buildDomainSeparator();
    }

    function voucherDigest(bytes32 id, uint128 amount) external view returns (bytes32) {
        return _hashTypedData(_amountStructHash(VOUCHER_TYPEHASH, id, amount));
    }

    function cooperativeCloseDigest(bytes32 id, uint128 claimAmount) external view returns (bytes32) {
        return _hashTypedData(_amountStructHash(COOPERATIVE_CLOSE_TYPEHASH, id, claimAmount));
    }

    // ------------------------------------------------------------------ internals: state

    function _credit(ChannelConfig calldata c, uint256 amount) private {
        if (amount == 0) revert ZeroDeposit();
        bytes32 id = channelId(c);
        uint256 packed = _channels[id];
        uint256 total;
        if (packed == 0) {
            if (!_isValidNewConfig(c)) revert InvalidConfig();
            total = amount;
            _emitChannelOpened(c, id, amount);
        } else {
            _requireOpen(packed);
            total = _deposited(packed) + amount;
            emit ChannelDeposited(id, amount, total);
        }
        if (total > maxDepositPerChannel) revert DepositLimitExceeded();
        _channels[id] = (packed & ~_AMOUNT_MASK) | total;
    }

    /// Payer, signer and receiver set; close delay within [MIN_CLOSE_DELAY, MAX_CLOSE_DELAY]. The
    /// receiver authorizer may be address(0) (the receiver acts alone).
    function _isValidNewConfig(ChannelConfig calldata c) private pure returns (bool valid) {
        assembly ("memory-safe") {
            let delay := calldataload(add(c, 0x80))
            valid := and(and(gt(calldataload(c), 0), gt(calldataload(add(c, 0x20)), 0)), gt(calldataload(add(c, 0x40)), 0))
            valid := and(valid, and(iszero(lt(delay, 900)), iszero(gt(delay, 2592000)))) // 15 minutes, 30 days
        }
    }

    /// `emit ChannelOpened(...)` written out: the config words are copied from calldata as they are
    /// (`channelId` already rejected non-canonical encodings).
    function _emitChannelOpened(ChannelConfig calldata c, bytes32 id, uint256 amount) private {
        bytes32 topic = ChannelOpened.selector;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, calldataload(add(c, 0x20))) // signer
            calldatacopy(add(ptr, 0x20), add(c, 0x60), 0x80) // token, closeDelay, salt, receiverAuthorizer
            mstore(add(ptr, 0xa0), amount)
            log4(ptr, 0xc0, topic, id, calldataload(c), calldataload(add(c, 0x40))) // payer, receiver
        }
    }

    function _settle(ChannelConfig calldata c, bytes32 id, uint256 packed, uint256 claimedBefore, uint256 claimedAfter)
        private
    {
        uint256 deposited = _deposited(packed);
        uint256 refund = deposited - claimedAfter;
        _channels[id] = deposited | (claimedAfter << 108) | (_SETTLED << 216);
        emit ChannelSettled(id, claimedAfter, refund);
        if (claimedAfter > claimedBefore) _pay(c.token, c.receiver, claimedAfter - claimedBefore);
        if (refund != 0) _pay(c.token, c.payer, refund);
    }

    /// The claimed total a voucher for `amount` leads to: clamped to the deposit. Reverts on a channel
    /// that does not exist or has been settled.
    function _claimTarget(uint256 packed, uint256 amount) private pure returns (uint256) {
        if (packed == 0) revert ChannelUnknown();
        if (_closeDeadline(packed) == _SETTLED) revert ChannelIsSettled();
        return _min(amount, _deposited(packed));
    }

    function _requireOpen(uint256 packed) private pure {
        if (packed == 0) revert ChannelUnknown();
        uint256 deadline = _closeDeadline(packed);
        if (deadline == _SETTLED) revert ChannelIsSettled();
        if (deadline != 0) revert ChannelClosing();
    }

    function _deposited(uint256 packed) private pure returns (uint256) {
        return packed & _AMOUNT_MASK;
    }

    function _claimed(uint256 packed) private pure returns (uint256) {
        return (packed >> 108) & _AMOUNT_MASK;
    }

    function _closeDeadline(uint256 packed) private pure returns (uint256) {
        return packed >> 216;
    }

    function _withClaimed(uint256 packed, uint256 claimed_) private pure returns (uint256) {
        return (packed & ~(_AMOUNT_MASK << 108)) | (claimed_ << 108);
    }

    function _min(uint256 a, uint256 b) private pure returns (uint256) {
        return a < b ? a : b;
    }

    // ------------------------------------------------------------------ internals: EIP-712 and signatures

    function _buildDomainSeparator() private view returns (bytes32) {
        return keccak256(abi.encode(_DOMAIN_TYPEHASH, _NAME_HASH, _VERSION_HASH, block.chainid, address(this)));
    }

    function _channelId(
        address payer,
        address signer,
        address receiver,
        address token,
        uint32 closeDelay,
        uint96 salt,
        address receiverAuthorizer
    ) private view returns (bytes32 structHash) {
        bytes32 typehash = CHANNEL_TYPEHASH;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), payer)
            mstore(add(ptr, 0x40), signer)
            mstore(add(ptr, 0x60), receiver)
            mstore(add(ptr, 0x80), token)
            mstore(add(ptr, 0xa0), closeDelay)
            mstore(add(ptr, 0xc0), salt)
            mstore(add(ptr, 0xe0), receiverAuthorizer)
            structHash := keccak256(ptr, 0x100)
        }
        return _hashTypedData(structHash);
    }

    /// `channelId` straight from the calldata struct: one copy, one hash. Rejects non-canonical
    /// encodings (dirty high bits), which would otherwise name a different channel.
    function _channelIdOf(ChannelConfig calldata c) private view returns (bytes32 structHash) {
        bytes32 typehash = CHANNEL_TYPEHASH;
        assembly ("memory-safe") {
            let dirty := or(shr(160, calldataload(c)), shr(160, calldataload(add(c, 0x20))))
            dirty := or(dirty, or(shr(160, calldataload(add(c, 0x40))), shr(160, calldataload(add(c, 0x60)))))
            dirty := or(dirty, or(shr(32, calldataload(add(c, 0x80))), shr(96, calldataload(add(c, 0xa0)))))
            dirty := or(dirty, shr(160, calldataload(add(c, 0xc0))))
            if dirty { revert(0, 0) }
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            calldatacopy(add(ptr, 0x20), c, 0xe0)
            structHash := keccak256(ptr, 0x100)
        }
        return _hashTypedData(structHash);
    }

    function _hashTypedData(bytes32 structHash) private view returns (bytes32 digest) {
        bytes32 separator = domainSeparator();
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, hex"1901")
            mstore(add(ptr, 0x02), separator)
            mstore(add(ptr, 0x22), structHash)
            digest := keccak256(ptr, 0x42)
        }
    }

    /// keccak256(abi.encode(typehash, id, amount)): the struct hash of a Voucher or CooperativeClose.
    function _amountStructHash(bytes32 typehash, bytes32 id, uint256 amount) private pure returns (bytes32 h) {
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, typehash)
            mstore(add(ptr, 0x20), id)
            mstore(add(ptr, 0x40), amount)
            h := keccak256(ptr, 0x60)
        }
    }

    /// Vouchers are signed by a plain key (EIP-2098 compact signature, low-s only).
    function _verifyVoucher(address signer, bytes32 id, uint256 amount, bytes32 r, bytes32 vs) private view {
        bytes32 digest = _hashTypedData(_amountStructHash(VOUCHER_TYPEHASH, id, amount));
        if (_recover(digest, uint8(uint256(vs >> 255)) + 27, r, vs & _S_MASK) != signer) {
            revert InvalidSignature();
        }
    }

    /// ecrecover that rejects high-s and returns address(0) for any invalid signature.
    function _recover(bytes32 digest, uint8 v, bytes32 r, bytes32 s) private view returns (address signer) {
        if (uint256(s) > _HALF_CURVE_ORDER) return address(0);
        if (v < 27) v += 27; // some signers encode v as 0/1
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, digest)
            mstore(add(ptr, 0x20), v)
            mstore(add(ptr, 0x40), r)
            mstore(add(ptr, 0x60), s)
            mstore(0x00, 0) // the precompile returns nothing for an invalid signature
            pop(staticcall(gas(), 0x01, ptr, 0x80, 0x00, 0x20))
            signer := mload(0x00)
        }
    }

    /// ECDSA (65-byte or 64-byte compact, low-s) from a key, or EIP-1271 from a contract account.
    function _isValidSignature(address account, bytes32 digest, bytes calldata signature) private view returns (bool) {
        address recovered;
        if (signature.length == 65) {
            recovered = _recover(digest, uint8(signature[64]), bytes32(signature[0:32]), bytes32(signature[32:64]));
        } else if (signature.length == 64) {
            bytes32 vs = bytes32(signature[32:64]);
            recovered = _recover(
                digest, uint8(uint256(vs >> 255)) + 27, bytes32(signature[0:32]), vs & _S_MASK
            );
        }
        if (recovered != address(0) && recovered == account) return true;
        if (account.code.length == 0) return false;
        (bool ok, bytes memory ret) =
            account.staticcall(abi.encodeWithSelector(IERC1271.isValidSignature.selector, digest, signature));
        return ok && ret.length >= 32 && bytes4(abi.decode(ret, (bytes32))) == _ERC1271_MAGIC;
    }

    // ------------------------------------------------------------------ internals: tokens and payouts

    /// Pulls `amount` of `token` from the caller and returns what actually arrived.
    function _pullToken(address token, uint256 amount) private returns (uint256 received) {
        if (token == address(0)) revert WrongValue();
        uint256 before = _balanceOf(token);
        bool ok;
        assembly ("memory-safe") {
            let ptr := mload(0x40)
            mstore(ptr, 0x23b872dd00000000000000000000000000000000000000000000000000000000) // transferFrom
            mstore(add(ptr, 0x04), caller())
            mstore(add(ptr, 0x24), address())
            mstore(add(ptr, 0x44), amount)
            ok := call(gas(), token, 0, ptr, 0x64, 0, 0x20)
            // Accept tokens that return nothing; reject those that return false.
            ok := and(ok, or(iszero(returndatasize()), and(gt(returndatasize(), 31), eq(mload(0), 1))))
        }
        if (!ok) revert TokenTransferFailed();
        received = _balanceOf(token) - before;
    }

    function _balanceOf(address token) private view returns (uint256 held) {
        bool ok;
        assembly ("memory-safe") {
            mstore(0x00, 0x70a0823100000000000000000000000000000000000000000000000000000000) // balanceOf
            mstore(0x04, address())
            ok := staticcall(gas(), token, 0, 0x24, 0, 0x20)
            ok := and(ok, gt(returndatasize(), 31))
            held := mload(0)
        }
        if (!ok) revert TokenTransferFailed(); // a token without balanceOf cannot be credited
    }

    /// Pays out; a payout that fails is credited to `pendingPayouts` so it never blocks the other side.
    /// Only the caller's own payout gets all remaining gas: a recipient cannot burn the caller's gas.
    function _pay(address token, address to, uint256 amount) private {
        uint256 gasLimit = to == msg.sender ? gasleft() : COUNTERPARTY_PAYOUT_GAS;
        if (!_transferOut(token, to, amount, gasLimit)) {
            pendingPayouts[token][to] += amount;
            emit PayoutDeferred(token, to, amount);
        }
    }

    function _transferOut(address token, address to, uint256 amount, uint256 gasLimit) private returns (bool ok) {
        assembly ("memory-safe") {
            switch token
            case 0 { ok := call(gasLimit, to, amount, 0, 0, 0, 0) }
            default {
                let ptr := mload(0x40)
                mstore(ptr, 0xa9059cbb00000000000000000000000000000000000000000000000000000000) // transfer
                mstore(add(ptr, 0x04), to)
                mstore(add(ptr, 0x24), amount)
                ok := call(gasLimit, token, 0, ptr, 0x44, 0, 0x20)
                ok := and(ok, or(iszero(returndatasize()), and(gt(returndatasize(), 31), eq(mload(0), 1))))
            }
        }
    }
}

interface IERC1271 {
    function isValidSignature(bytes32 hash, bytes calldata signature) external view returns (bytes4);
}
