// SPDX-License-Identifier: MIT
//
// picopay ChannelManager: an implementation, written for picopay, of the Connext v1
// ChannelManager interface (function names, argument layouts, events, state hashing).
// A tool that speaks the v1 ABI drives it unchanged; a state signed for v1 is valid here.
//
// Rules as built, and every deviation from v1, are in docs/chain.md. In short:
//  - channel state hash: keccak256(abi.encodePacked(address(this), address[2] [user,
//    recipient], uint256[2] weiBalances, uint256[2] tokenBalances, uint256[4]
//    pendingWeiUpdates, uint256[4] pendingTokenUpdates, uint256[2] txCount, bytes32
//    threadRoot, uint256 threadCount, uint256 timeout)): 628-byte preimage.
//  - thread state hash: keccak256(abi.encodePacked(address(this), sender, receiver,
//    uint256 threadId, uint256[2] weiBalances, uint256[2] tokenBalances, uint256 txCount)).
//  - signatures are eth_sign (EIP-191 personal message of the 32-byte hash), passed as a
//    string "0x" + 130 hex (r || s || v), v in {0, 1, 27, 28}; high-S is refused (EIP-2).
//  - mended v1 flaws: anyone (a watchtower) may submit a newer double-signed state or a
//    newer sender-signed thread state and may empty channels and threads (funds only ever
//    go to the user or the hub's reserve); thread payouts give each channel's user its own
//    share and the rest to the hub reserve; each thread has its own dispute timer;
//    authorized updates and dispute states must leave the channel solvent; an authorized
//    update must move txCount[1] strictly forward (v1 took an equal one, so a newer state
//    carrying the same pending withdrawal was paid twice); nukeThreads waits for every
//    thread dispute touching the channel (its timer plus one challenge period) and for
//    ten challenge periods from when the thread dispute phase actually began; the
//    challenge period is bounded (60 s to 365 days).
//  - pull-payment fallback: when ETH or tokens pushed to a user or a withdrawal recipient
//    are refused (a contract without receive, a blacklisted address), the amount is
//    credited to owedWei/owedTokens and the settlement goes on; the address takes it
//    later with withdrawOwed/withdrawOwedTo. Owed amounts are not hub reserve.
pragma solidity 0.8.28;

/// The subset of ERC-20 the manager uses.
interface IERC20Minimal {
    function transfer(address to, uint256 value) external returns (bool);
    function transferFrom(address from, address to, uint256 value) external returns (bool);
    function balanceOf(address who) external view returns (uint256);
}

contract ChannelManager {
    string public constant NAME = "Channel Manager";
    string public constant VERSION = "0.0.1";

    // secp256k1 group order / 2: signatures with s above it are refused (EIP-2).
    uint256 private constant HALF_N =
        0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0;

    address public immutable hub;
    uint256 public immutable challengePeriod;
    IERC20Minimal public immutable approvedToken;

    // Bounds of the challenge period (seconds): below the minimum nobody can answer a
    // stale exit; above the maximum the exit and nuke deadlines approach overflow.
    uint256 public constant MIN_CHALLENGE_PERIOD = 60;
    uint256 public constant MAX_CHALLENGE_PERIOD = 365 days;

    uint256 public totalChannelWei;
    uint256 public totalChannelToken;

    // Pull-payment fallback (not in v1): amounts a refused push left in the contract,
    // per address, and their totals (owed by the contract, so never hub reserve).
    mapping(address => uint256) public owedWei;
    mapping(address => uint256) public owedTokens;
    uint256 public totalOwedWei;
    uint256 public totalOwedTokens;

    // ---- events: v1's, field for field ----
    event DidHubContractWithdraw(uint256 weiAmount, uint256 tokenAmount);

    // Not in v1: a push to `owner` was refused and credited (amounts of this push only).
    event DidCreditOwed(address indexed owner, uint256 weiAmount, uint256 tokenAmount);
    // Not in v1: `owner` withdrew what it was owed to `to`.
    event DidWithdrawOwed(address indexed owner, address to, uint256 weiAmount, uint256 tokenAmount);

    // The payload is the state that caused the update (pending fields not yet applied).
    event DidUpdateChannel(
        address indexed user,
        uint256 senderIdx, // 0: hub, 1: user
        uint256[2] weiBalances, // [hub, user]
        uint256[2] tokenBalances, // [hub, user]
        uint256[4] pendingWeiUpdates, // [hubDeposit, hubWithdrawal, userDeposit, userWithdrawal]
        uint256[4] pendingTokenUpdates,
        uint256[2] txCount, // [global, onchain]
        bytes32 threadRoot,
        uint256 threadCount
    );

    // The channel state after any update applied by startExitWithUpdate.
    event DidStartExitChannel(
        address indexed user,
        uint256 senderIdx, // 0: hub, 1: user (2: anyone else; v1 wrote 1)
        uint256[2] weiBalances,
        uint256[2] tokenBalances,
        uint256[2] txCount,
        bytes32 threadRoot,
        uint256 threadCount
    );

    event DidEmptyChannel(
        address indexed user,
        uint256 senderIdx,
        uint256[2] weiBalances,
        uint256[2] tokenBalances,
        uint256[2] txCount,
        bytes32 threadRoot,
        uint256 threadCount
    );

    event DidStartExitThread(
        address user,
        address indexed sender,
        address indexed receiver,
        uint256 threadId,
        address senderAddress,
        uint256[2] weiBalances, // [sender, receiver]
        uint256[2] tokenBalances,
        uint256 txCount
    );

    event DidChallengeThread(
        address indexed sender,
        address indexed receiver,
        uint256 threadId,
        address senderAddress,
        uint256[2] weiBalances,
        uint256[2] tokenBalances,
        uint256 txCount
    );

    event DidEmptyThread(
        address user,
        address indexed sender,
        address indexed receiver,
        uint256 threadId,
        address senderAddress,
        uint256[2] channelWeiBalances,
        uint256[2] channelTokenBalances,
        uint256[2] channelTxCount,
        bytes32 channelThreadRoot,
        uint256 channelThreadCount
    );

    event DidNukeThreads(
        address indexed user,
        address senderAddress,
        uint256 weiAmount,
        uint256 tokenAmount,
        uint256[2] channelWeiBalances,
        uint256[2] channelTokenBalances,
        uint256[2] channelTxCount,
        bytes32 channelThreadRoot,
        uint256 channelThreadCount
    );

    enum ChannelStatus {
        Open,
        ChannelDispute,
        ThreadDispute
    }

    struct Channel {
        uint256[3] weiBalances; // [hub, user, total]
        uint256[3] tokenBalances; // [hub, user, total]
        uint256[2] txCount; // [global, onchain]; kept when the channel is emptied
        bytes32 threadRoot;
        uint256 threadCount;
        address exitInitiator;
        uint256 channelClosingTime;
        ChannelStatus status;
    }

    struct Thread {
        uint256[2] weiBalances; // [sender, receiver]
        uint256[2] tokenBalances; // [sender, receiver]
        uint256 txCount;
        uint256 threadClosingTime; // this thread's own dispute timer
        bool[2] emptied; // [sender's channel, receiver's channel]
    }

    // A channel state as passed to the functions, gathered to keep the stack shallow.
    struct StateArgs {
        address[2] user; // [user, recipient]
        uint256[2] weiBalances;
        uint256[2] tokenBalances;
        uint256[4] pendingWeiUpdates;
        uint256[4] pendingTokenUpdates;
        uint256[2] txCount;
        bytes32 threadRoot;
        uint256 threadCount;
        uint256 timeout;
    }

    mapping(address => Channel) public channels;
    mapping(address => mapping(address => mapping(uint256 => Thread))) private threads;

    // Not in v1: nukeThreads(user) is refused until this time has passed. Raised (never
    // lowered) to ten challenge periods after the channel's thread dispute phase begins
    // (not before its channelClosingTime) and, for the channels of both the sender and
    // the receiver, to one challenge period after each thread dispute's own timer, so a
    // running thread dispute and the settlement after it can not be pre-empted.
    mapping(address => uint256) public nukeThreadsAfter;

    bool private locked;

    modifier onlyHub() {
        require(msg.sender == hub, "only hub");
        _;
    }

    modifier noReentrancy() {
        require(!locked, "Reentrant call.");
        locked = true;
        _;
        locked = false;
    }

    /// tokenAddress may be 0 for an ETH-only manager (token amounts must then be 0).
    constructor(address _hub, uint256 _challengePeriod, address _tokenAddress) {
        require(_hub != address(0), "hub can not be zero");
        require(_challengePeriod >= MIN_CHALLENGE_PERIOD && _challengePeriod <= MAX_CHALLENGE_PERIOD,
            "challenge period must be 60 s to 365 days");
        hub = _hub;
        challengePeriod = _challengePeriod;
        approvedToken = IERC20Minimal(_tokenAddress);
    }

    receive() external payable {}

    // ------------------------------------------------------------------ hub reserve

    function hubContractWithdraw(uint256 weiAmount, uint256 tokenAmount) public noReentrancy onlyHub {
        require(getHubReserveWei() >= weiAmount, "hubContractWithdraw: Contract wei funds not sufficient to withdraw");
        require(getHubReserveTokens() >= tokenAmount, "hubContractWithdraw: Contract token funds not sufficient to withdraw");
        _sendWei(hub, weiAmount);
        _sendToken(hub, tokenAmount);
        emit DidHubContractWithdraw(weiAmount, tokenAmount);
    }

    function getHubReserveWei() public view returns (uint256) {
        return address(this).balance - totalChannelWei - totalOwedWei;
    }

    function getHubReserveTokens() public view returns (uint256) {
        if (address(approvedToken) == address(0)) return 0;
        return approvedToken.balanceOf(address(this)) - totalChannelToken - totalOwedTokens;
    }

    // ------------------------------------------------------------ pull payments

    /// Pay msg.sender everything it is owed (wei and tokens) after a refused push.
    function withdrawOwed() public noReentrancy {
        _withdrawOwed(msg.sender);
    }

    /// As withdrawOwed, paid to `to` (for an owner that can not receive, e.g. a token
    /// blacklist). A refused transfer reverts and the credit stays.
    function withdrawOwedTo(address to) public noReentrancy {
        require(to != address(0), "to can not be zero");
        _withdrawOwed(to);
    }

    function _withdrawOwed(address to) private {
        uint256 weiAmount = owedWei[msg.sender];
        uint256 tokenAmount = owedTokens[msg.sender];
        require(weiAmount > 0 || tokenAmount > 0, "nothing owed");
        owedWei[msg.sender] = 0;
        owedTokens[msg.sender] = 0;
        totalOwedWei -= weiAmount;
        totalOwedTokens -= tokenAmount;
        _sendWei(to, weiAmount);
        _sendToken(to, tokenAmount);
        emit DidWithdrawOwed(msg.sender, to, weiAmount, tokenAmount);
    }

    // ------------------------------------------------------------- authorized updates

    /// The hub executes a user-signed state: hub and user deposits come from the hub's
    /// reserve, the user's withdrawal goes to `recipient`, the hub's to its reserve.
    function hubAuthorizedUpdate(
        address user,
        address recipient,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        uint256[4] calldata pendingWeiUpdates,
        uint256[4] calldata pendingTokenUpdates,
        uint256[2] calldata txCount,
        bytes32 threadRoot,
        uint256 threadCount,
        uint256 timeout,
        string calldata sigUser
    ) public noReentrancy onlyHub {
        StateArgs memory s = StateArgs([user, recipient], weiBalances, tokenBalances, pendingWeiUpdates,
            pendingTokenUpdates, txCount, threadRoot, threadCount, timeout);
        Channel storage channel = channels[user];
        _verifyAuthorizedUpdate(channel, s, true);
        bytes32 h = _stateHash(s);
        require(_recover(h, sigUser) == user, "user signature invalid");

        _updateChannelBalances(channel, s);
        _payOrCredit(recipient, pendingWeiUpdates[3], pendingTokenUpdates[3]);

        channel.txCount = txCount;
        channel.threadRoot = threadRoot;
        channel.threadCount = threadCount;

        emit DidUpdateChannel(user, 0, weiBalances, tokenBalances, pendingWeiUpdates, pendingTokenUpdates,
            txCount, threadRoot, threadCount);
    }

    /// The user (msg.sender) executes a hub-signed state, paying its own wei deposit as
    /// msg.value and its token deposit by transferFrom (approve first).
    function userAuthorizedUpdate(
        address recipient,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        uint256[4] calldata pendingWeiUpdates,
        uint256[4] calldata pendingTokenUpdates,
        uint256[2] calldata txCount,
        bytes32 threadRoot,
        uint256 threadCount,
        uint256 timeout,
        string calldata sigHub
    ) public payable noReentrancy {
        require(msg.value == pendingWeiUpdates[2], "msg.value is not equal to pending user deposit");
        StateArgs memory s = StateArgs([msg.sender, recipient], weiBalances, tokenBalances, pendingWeiUpdates,
            pendingTokenUpdates, txCount, threadRoot, threadCount, timeout);
        Channel storage channel = channels[msg.sender];
        _verifyAuthorizedUpdate(channel, s, false);
        bytes32 h = _stateHash(s);
        require(_recover(h, sigHub) == hub, "hub signature invalid");

        _pullToken(msg.sender, pendingTokenUpdates[2]);
        _updateChannelBalances(channel, s);
        _payOrCredit(recipient, pendingWeiUpdates[3], pendingTokenUpdates[3]);

        channel.txCount = txCount;
        channel.threadRoot = threadRoot;
        channel.threadCount = threadCount;

        emit DidUpdateChannel(msg.sender, 1, weiBalances, tokenBalances, pendingWeiUpdates, pendingTokenUpdates,
            txCount, threadRoot, threadCount);
    }

    // ------------------------------------------------------------ unilateral exits

    /// Start an exit with the state stored on chain. Hub or user only.
    function startExit(address user) public noReentrancy {
        _checkUser(user);
        Channel storage channel = channels[user];
        require(channel.status == ChannelStatus.Open, "channel must be open");
        require(msg.sender == hub || msg.sender == user, "exit initiator must be user or hub");

        channel.exitInitiator = msg.sender;
        channel.channelClosingTime = block.timestamp + challengePeriod;
        channel.status = ChannelStatus.ChannelDispute;
        _emitStartExit(user, channel);
    }

    /// Start an exit with a double-signed off-chain state. Hub or user only.
    function startExitWithUpdate(
        address[2] calldata user,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        uint256[4] calldata pendingWeiUpdates,
        uint256[4] calldata pendingTokenUpdates,
        uint256[2] calldata txCount,
        bytes32 threadRoot,
        uint256 threadCount,
        uint256 timeout,
        string calldata sigHub,
        string calldata sigUser
    ) public noReentrancy {
        Channel storage channel = channels[user[0]];
        require(channel.status == ChannelStatus.Open, "channel must be open");
        require(msg.sender == hub || msg.sender == user[0], "exit initiator must be user or hub");
        StateArgs memory s = StateArgs(user, weiBalances, tokenBalances, pendingWeiUpdates,
            pendingTokenUpdates, txCount, threadRoot, threadCount, timeout);
        _applyDisputeState(channel, s, sigHub, sigUser);

        channel.exitInitiator = msg.sender;
        channel.channelClosingTime = block.timestamp + challengePeriod;
        channel.status = ChannelStatus.ChannelDispute;
        _emitStartExit(user[0], channel);
    }

    /// During the challenge period, anyone holding a newer double-signed state (the other
    /// party or a watchtower) submits it. The party that did not start the exit empties the
    /// channel by it at once (v1); from anyone else (the initiator, a watchtower) the state
    /// is only recorded and the period runs on, so the exit's initiator can never finalise
    /// its own exit with an older state before the other side has answered.
    function emptyChannelWithChallenge(
        address[2] calldata user,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        uint256[4] calldata pendingWeiUpdates,
        uint256[4] calldata pendingTokenUpdates,
        uint256[2] calldata txCount,
        bytes32 threadRoot,
        uint256 threadCount,
        uint256 timeout,
        string calldata sigHub,
        string calldata sigUser
    ) public noReentrancy {
        Channel storage channel = channels[user[0]];
        require(channel.status == ChannelStatus.ChannelDispute, "channel must be in dispute");
        require(block.timestamp < channel.channelClosingTime, "channel closing time must not have passed");
        StateArgs memory s = StateArgs(user, weiBalances, tokenBalances, pendingWeiUpdates,
            pendingTokenUpdates, txCount, threadRoot, threadCount, timeout);
        _applyDisputeState(channel, s, sigHub, sigUser);
        if (msg.sender != channel.exitInitiator && (msg.sender == hub || msg.sender == user[0])) {
            _empty(user[0], channel);
        } else {
            _emitStartExit(user[0], channel);
        }
    }

    /// After the challenge period anyone may empty; before it, the party that did not
    /// start the exit may (accepting the state on chain).
    function emptyChannel(address user) public noReentrancy {
        _checkUser(user);
        Channel storage channel = channels[user];
        require(channel.status == ChannelStatus.ChannelDispute, "channel must be in dispute");
        require(
            channel.channelClosingTime < block.timestamp ||
                (msg.sender != channel.exitInitiator && (msg.sender == hub || msg.sender == user)),
            "channel closing time must have passed or msg.sender must be non-exit-initiating party"
        );
        _empty(user, channel);
    }

    // ------------------------------------------------------------ thread disputes

    /// Start a thread's dispute with its initial state (proved against the channel's
    /// threadRoot). Hub or user only; the thread gets its own timer.
    function startExitThread(
        address user,
        address sender,
        address receiver,
        uint256 threadId,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        bytes calldata proof,
        string calldata sig
    ) public noReentrancy {
        Thread storage thread = _startThreadChecks(user, sender, receiver, threadId, weiBalances, tokenBalances);
        _verifyThread(sender, receiver, threadId, weiBalances, tokenBalances, 0, proof, sig, channels[user].threadRoot);

        thread.weiBalances = weiBalances;
        thread.tokenBalances = tokenBalances;
        thread.threadClosingTime = block.timestamp + challengePeriod;
        _holdNuke(sender, receiver, thread.threadClosingTime);
        emit DidStartExitThread(user, sender, receiver, threadId, msg.sender, thread.weiBalances,
            thread.tokenBalances, thread.txCount);
    }

    /// Start a thread's dispute with its initial state and a newer sender-signed state.
    function startExitThreadWithUpdate(
        address user,
        address[2] calldata threadMembers, // [sender, receiver]
        uint256 threadId,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        bytes calldata proof,
        string calldata sig,
        uint256[2] calldata updatedWeiBalances,
        uint256[2] calldata updatedTokenBalances,
        uint256 updatedTxCount,
        string calldata updateSig
    ) public noReentrancy {
        Thread storage thread = _startThreadChecks(user, threadMembers[0], threadMembers[1], threadId,
            weiBalances, tokenBalances);
        _verifyThread(threadMembers[0], threadMembers[1], threadId, weiBalances, tokenBalances, 0, proof, sig,
            channels[user].threadRoot);

        require(updatedTxCount > 0, "updated thread txCount must be higher than 0");
        require(updatedWeiBalances[0] + updatedWeiBalances[1] == weiBalances[0],
            "sum of updated wei balances must match sender's initial wei balance");
        require(updatedTokenBalances[0] + updatedTokenBalances[1] == tokenBalances[0],
            "sum of updated token balances must match sender's initial token balance");
        _verifyThreadSig(threadMembers[0], threadMembers[1], threadId, updatedWeiBalances, updatedTokenBalances,
            updatedTxCount, updateSig);

        thread.weiBalances = updatedWeiBalances;
        thread.tokenBalances = updatedTokenBalances;
        thread.txCount = updatedTxCount;
        thread.threadClosingTime = block.timestamp + challengePeriod;
        _holdNuke(threadMembers[0], threadMembers[1], thread.threadClosingTime);
        emit DidStartExitThread(user, threadMembers[0], threadMembers[1], threadId, msg.sender,
            thread.weiBalances, thread.tokenBalances, thread.txCount);
    }

    /// Before the thread's timer ends, anyone holding a newer sender-signed thread state
    /// (the receiver, the hub or a watchtower) replaces the disputed one. A state that
    /// pays the receiver more wins even with a lower txCount: the sender signs alone, so
    /// it could otherwise sign a state with a txCount above the receiver's latest (up to
    /// 2^256-1) that pays nothing and lock the receiver's latest state out.
    function challengeThread(
        address sender,
        address receiver,
        uint256 threadId,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        uint256 txCount,
        string calldata sig
    ) public noReentrancy {
        Thread storage thread = threads[sender][receiver][threadId];
        require(block.timestamp < thread.threadClosingTime, "thread closing time must not have passed");
        require(txCount > thread.txCount || weiBalances[1] > thread.weiBalances[1] ||
            tokenBalances[1] > thread.tokenBalances[1],
            "thread txCount must be higher than the current thread txCount or the receiver paid more");
        require(weiBalances[0] + weiBalances[1] == thread.weiBalances[0] + thread.weiBalances[1],
            "updated wei balances must match sum of thread wei balances");
        require(tokenBalances[0] + tokenBalances[1] == thread.tokenBalances[0] + thread.tokenBalances[1],
            "updated token balances must match sum of thread token balances");
        require(weiBalances[1] >= thread.weiBalances[1] && tokenBalances[1] >= thread.tokenBalances[1],
            "receiver balances may never decrease");
        _verifyThreadSig(sender, receiver, threadId, weiBalances, tokenBalances, txCount, sig);

        thread.weiBalances = weiBalances;
        thread.tokenBalances = tokenBalances;
        thread.txCount = txCount;
        emit DidChallengeThread(sender, receiver, threadId, msg.sender, thread.weiBalances,
            thread.tokenBalances, thread.txCount);
    }

    /// After the thread's timer ends, settle it in `user`'s channel: the user receives its
    /// own share (the sender's remainder or the receiver's part), the other share goes to
    /// the hub's reserve (the hub is the counterparty in that channel). Anyone may call.
    function emptyThread(
        address user,
        address sender,
        address receiver,
        uint256 threadId,
        uint256[2] calldata weiBalances,
        uint256[2] calldata tokenBalances,
        bytes calldata proof,
        string calldata sig
    ) public noReentrancy {
        Channel storage channel = channels[user];
        require(channel.status == ChannelStatus.ThreadDispute, "channel must be in thread dispute");
        require(user == sender || user == receiver, "user must be thread sender or receiver");
        require(weiBalances[1] == 0 && tokenBalances[1] == 0, "initial receiver balances must be zero");

        Thread storage thread = threads[sender][receiver][threadId];
        require(thread.threadClosingTime != 0 && thread.threadClosingTime < block.timestamp,
            "Thread closing time must have passed");
        uint256 side = user == sender ? 0 : 1;
        require(!thread.emptied[side], "user cannot empty twice");

        _verifyThread(sender, receiver, threadId, weiBalances, tokenBalances, 0, proof, sig, channel.threadRoot);
        uint256 weiSum = thread.weiBalances[0] + thread.weiBalances[1];
        uint256 tokenSum = thread.tokenBalances[0] + thread.tokenBalances[1];
        require(weiSum == weiBalances[0], "sum of thread wei balances must match sender's initial wei balance");
        require(tokenSum == tokenBalances[0], "sum of thread token balances must match sender's initial token balance");

        thread.emptied[side] = true;
        channel.weiBalances[2] -= weiSum;
        channel.tokenBalances[2] -= tokenSum;
        totalChannelWei -= weiSum;
        totalChannelToken -= tokenSum;
        channel.threadCount -= 1;
        if (channel.threadCount == 0) {
            channel.threadRoot = bytes32(0);
            channel.channelClosingTime = 0;
            channel.status = ChannelStatus.Open;
        }

        _payOrCredit(user, thread.weiBalances[side], thread.tokenBalances[side]);

        emit DidEmptyThread(user, sender, receiver, threadId, msg.sender,
            [channel.weiBalances[0], channel.weiBalances[1]], [channel.tokenBalances[0], channel.tokenBalances[1]],
            channel.txCount, channel.threadRoot, channel.threadCount);
    }

    /// Ten challenge periods after the thread dispute phase began (not before the channel
    /// dispute closed), and one challenge period after the timer of every thread dispute
    /// of this user (as sender or receiver), anyone may hand what is still locked in
    /// threads to the user and reopen the channel (v1's escape hatch; v1 measured only
    /// from channelClosingTime, so it could pre-empt a running thread dispute).
    function nukeThreads(address user) public noReentrancy {
        _checkUser(user);
        Channel storage channel = channels[user];
        require(channel.status == ChannelStatus.ThreadDispute, "channel must be in thread dispute");
        require(nukeThreadsAfter[user] < block.timestamp,
            "10 challenge periods since the thread dispute began and 1 after every thread timer must pass");

        uint256 weiAmount = channel.weiBalances[2];
        uint256 tokenAmount = channel.tokenBalances[2];
        totalChannelWei -= weiAmount;
        totalChannelToken -= tokenAmount;
        channel.weiBalances[2] = 0;
        channel.tokenBalances[2] = 0;
        channel.threadCount = 0;
        channel.threadRoot = bytes32(0);
        channel.channelClosingTime = 0;
        channel.status = ChannelStatus.Open;

        _payOrCredit(user, weiAmount, tokenAmount);

        emit DidNukeThreads(user, msg.sender, weiAmount, tokenAmount,
            [channel.weiBalances[0], channel.weiBalances[1]], [channel.tokenBalances[0], channel.tokenBalances[1]],
            channel.txCount, channel.threadRoot, channel.threadCount);
    }

    // ------------------------------------------------------------------ views

    function getChannelBalances(address user) public view returns (
        uint256 weiHub, uint256 weiUser, uint256 weiTotal,
        uint256 tokenHub, uint256 tokenUser, uint256 tokenTotal
    ) {
        Channel storage c = channels[user];
        return (c.weiBalances[0], c.weiBalances[1], c.weiBalances[2],
            c.tokenBalances[0], c.tokenBalances[1], c.tokenBalances[2]);
    }

    function getChannelDetails(address user) public view returns (
        uint256 txCountGlobal, uint256 txCountChain, bytes32 threadRoot, uint256 threadCount,
        address exitInitiator, uint256 channelClosingTime, ChannelStatus status
    ) {
        Channel storage c = channels[user];
        return (c.txCount[0], c.txCount[1], c.threadRoot, c.threadCount, c.exitInitiator,
            c.channelClosingTime, c.status);
    }

    function getThread(address sender, address receiver, uint256 threadId) public view returns (
        uint256 weiSender, uint256 weiReceiver, uint256 tokenSender, uint256 tokenReceiver,
        uint256 txCount, uint256 threadClosingTime, bool emptiedSender, bool emptiedReceiver
    ) {
        Thread storage t = threads[sender][receiver][threadId];
        return (t.weiBalances[0], t.weiBalances[1], t.tokenBalances[0], t.tokenBalances[1], t.txCount,
            t.threadClosingTime, t.emptied[0], t.emptied[1]);
    }

    // ------------------------------------------------------------------ internals

    function _checkUser(address user) private view {
        require(user != hub, "user can not be hub");
        require(user != address(this), "user can not be channel manager");
    }

    function _verifyAuthorizedUpdate(Channel storage channel, StateArgs memory s, bool isHub) private view {
        _checkUser(s.user[0]);
        require(channel.status == ChannelStatus.Open, "channel must be open");
        require(s.timeout == 0 || block.timestamp < s.timeout, "the timeout must be zero or not have passed");
        require(s.txCount[0] > channel.txCount[0], "global txCount must be higher than the current global txCount");
        // Strictly higher (v1: higher or equal): a state's pending operations run on chain
        // at most once, so a later state that carries the same pending withdrawal with the
        // same txCount[1] (a payment signed on top of it) can not pay it a second time.
        require(s.txCount[1] > channel.txCount[1], "onchain txCount must be higher than the current onchain txCount");
        require(s.weiBalances[0] + s.weiBalances[1] <= channel.weiBalances[2], "wei must be conserved");
        require(s.tokenBalances[0] + s.tokenBalances[1] <= channel.tokenBalances[2], "tokens must be conserved");
        uint256[4] memory pw = s.pendingWeiUpdates;
        uint256[4] memory pt = s.pendingTokenUpdates;
        if (isHub) {
            require(pw[0] + pw[2] <= getHubReserveWei(), "insufficient reserve wei for deposits");
            require(pt[0] + pt[2] <= getHubReserveTokens(), "insufficient reserve tokens for deposits");
        } else {
            // msg.value (the user's deposit) is already in this contract's balance: it is
            // not the hub's reserve (v1 counted it, so a hub deposit could be credited
            // from the user's own wei and the contract owed more than it held).
            require(pw[0] <= getHubReserveWei() - msg.value, "insufficient reserve wei for deposits");
            require(pt[0] <= getHubReserveTokens(), "insufficient reserve tokens for deposits");
        }
        require(channel.weiBalances[2] + pw[0] + pw[2] >= s.weiBalances[0] + s.weiBalances[1] + pw[1] + pw[3],
            "insufficient wei");
        require(channel.tokenBalances[2] + pt[0] + pt[2] >= s.tokenBalances[0] + s.tokenBalances[1] + pt[1] + pt[3],
            "insufficient token");
    }

    // v1's rule: if deposit > withdrawal the net is not yet in the signed balance, so add
    // it; otherwise the net was already subtracted and the signed balance stands.
    function _applyPendingUpdates(uint256[3] storage cb, uint256[2] memory b, uint256[4] memory p) private {
        cb[0] = p[0] > p[1] ? b[0] + (p[0] - p[1]) : b[0];
        cb[1] = p[2] > p[3] ? b[1] + (p[2] - p[3]) : b[1];
    }

    // The pending operations of the state never ran: undo what the signed balances
    // already anticipated (a net withdrawal was subtracted; give it back).
    function _revertPendingUpdates(uint256[3] storage cb, uint256[2] memory b, uint256[4] memory p) private {
        cb[0] = p[0] > p[1] ? b[0] : b[0] + (p[1] - p[0]);
        cb[1] = p[2] > p[3] ? b[1] : b[1] + (p[3] - p[2]);
    }

    function _updateChannelBalances(Channel storage channel, StateArgs memory s) private {
        _applyPendingUpdates(channel.weiBalances, s.weiBalances, s.pendingWeiUpdates);
        _applyPendingUpdates(channel.tokenBalances, s.tokenBalances, s.pendingTokenUpdates);
        uint256[4] memory pw = s.pendingWeiUpdates;
        uint256[4] memory pt = s.pendingTokenUpdates;
        totalChannelWei = totalChannelWei + pw[0] + pw[2] - pw[1] - pw[3];
        totalChannelToken = totalChannelToken + pt[0] + pt[2] - pt[1] - pt[3];
        channel.weiBalances[2] = channel.weiBalances[2] + pw[0] + pw[2] - pw[1] - pw[3];
        channel.tokenBalances[2] = channel.tokenBalances[2] + pt[0] + pt[2] - pt[1] - pt[3];
        _checkSolvent(channel);
    }

    function _checkSolvent(Channel storage channel) private view {
        require(channel.weiBalances[0] + channel.weiBalances[1] <= channel.weiBalances[2], "channel wei insolvent");
        require(channel.tokenBalances[0] + channel.tokenBalances[1] <= channel.tokenBalances[2],
            "channel tokens insolvent");
    }

    // Shared by startExitWithUpdate and emptyChannelWithChallenge: check a double-signed
    // state newer than the chain's and write its balances into the channel.
    function _applyDisputeState(Channel storage channel, StateArgs memory s, string calldata sigHub,
        string calldata sigUser) private {
        _checkUser(s.user[0]);
        require(s.timeout == 0, "can't start exit with time-sensitive states");
        bytes32 h = _stateHash(s);
        require(_recover(h, sigHub) == hub, "hub signature invalid");
        require(_recover(h, sigUser) == s.user[0], "user signature invalid");
        require(s.txCount[0] > channel.txCount[0], "global txCount must be higher than the current global txCount");
        require(s.txCount[1] >= channel.txCount[1], "onchain txCount must be higher or equal to the current onchain txCount");
        require(s.weiBalances[0] + s.weiBalances[1] <= channel.weiBalances[2], "wei must be conserved");
        require(s.tokenBalances[0] + s.tokenBalances[1] <= channel.tokenBalances[2], "tokens must be conserved");

        if (s.txCount[1] == channel.txCount[1]) {
            _applyPendingUpdates(channel.weiBalances, s.weiBalances, s.pendingWeiUpdates);
            _applyPendingUpdates(channel.tokenBalances, s.tokenBalances, s.pendingTokenUpdates);
        } else {
            _revertPendingUpdates(channel.weiBalances, s.weiBalances, s.pendingWeiUpdates);
            _revertPendingUpdates(channel.tokenBalances, s.tokenBalances, s.pendingTokenUpdates);
        }
        _checkSolvent(channel);
        channel.txCount[0] = s.txCount[0]; // txCount[1] moves only with authorized updates
        channel.threadRoot = s.threadRoot;
        channel.threadCount = s.threadCount;
    }

    // Pay out a disputed channel: the user's balances to the user, the hub's to the
    // reserve; what stays in the total is locked in threads.
    function _empty(address user, Channel storage channel) private {
        uint256 weiUser = channel.weiBalances[1];
        uint256 tokenUser = channel.tokenBalances[1];
        uint256 weiBoth = channel.weiBalances[0] + weiUser;
        uint256 tokenBoth = channel.tokenBalances[0] + tokenUser;
        channel.weiBalances[2] -= weiBoth;
        channel.tokenBalances[2] -= tokenBoth;
        totalChannelWei -= weiBoth;
        totalChannelToken -= tokenBoth;
        channel.weiBalances[0] = 0;
        channel.weiBalances[1] = 0;
        channel.tokenBalances[0] = 0;
        channel.tokenBalances[1] = 0;
        if (channel.threadCount > 0) {
            channel.status = ChannelStatus.ThreadDispute;
            uint256 began = channel.channelClosingTime > block.timestamp ? channel.channelClosingTime : block.timestamp;
            _raiseNukeTime(user, began + challengePeriod * 10);
        } else {
            channel.channelClosingTime = 0;
            channel.status = ChannelStatus.Open;
        }
        channel.exitInitiator = address(0);

        _payOrCredit(user, weiUser, tokenUser);

        emit DidEmptyChannel(user, _senderIdx(user), [uint256(0), uint256(0)], [uint256(0), uint256(0)],
            channel.txCount, channel.threadRoot, channel.threadCount);
    }

    function _emitStartExit(address user, Channel storage channel) private {
        emit DidStartExitChannel(user, _senderIdx(user), [channel.weiBalances[0], channel.weiBalances[1]],
            [channel.tokenBalances[0], channel.tokenBalances[1]], channel.txCount, channel.threadRoot,
            channel.threadCount);
    }

    // nukeThreads of both thread parties' channels waits one challenge period past the
    // thread's timer (time for anyone to call emptyThread).
    function _holdNuke(address sender, address receiver, uint256 threadClosingTime) private {
        _raiseNukeTime(sender, threadClosingTime + challengePeriod);
        _raiseNukeTime(receiver, threadClosingTime + challengePeriod);
    }

    function _raiseNukeTime(address user, uint256 time) private {
        if (nukeThreadsAfter[user] < time) nukeThreadsAfter[user] = time;
    }

    function _senderIdx(address user) private view returns (uint256) {
        if (msg.sender == hub) return 0;
        if (msg.sender == user) return 1;
        return 2;
    }

    function _startThreadChecks(
        address user, address sender, address receiver, uint256 threadId,
        uint256[2] calldata weiBalances, uint256[2] calldata tokenBalances
    ) private view returns (Thread storage thread) {
        require(channels[user].status == ChannelStatus.ThreadDispute, "channel must be in thread dispute phase");
        require(msg.sender == hub || msg.sender == user, "thread exit initiator must be user or hub");
        require(user == sender || user == receiver, "user must be thread sender or receiver");
        require(weiBalances[1] == 0 && tokenBalances[1] == 0, "initial receiver balances must be zero");
        thread = threads[sender][receiver][threadId];
        require(thread.threadClosingTime == 0, "thread closing time must be zero");
    }

    function _stateHash(StateArgs memory s) private view returns (bytes32) {
        return keccak256(abi.encodePacked(address(this), s.user, s.weiBalances, s.tokenBalances,
            s.pendingWeiUpdates, s.pendingTokenUpdates, s.txCount, s.threadRoot, s.threadCount, s.timeout));
    }

    function _threadHash(
        address sender, address receiver, uint256 threadId,
        uint256[2] calldata weiBalances, uint256[2] calldata tokenBalances, uint256 txCount
    ) private view returns (bytes32) {
        return keccak256(abi.encodePacked(address(this), sender, receiver, threadId, weiBalances, tokenBalances,
            txCount));
    }

    function _checkThreadParties(address sender, address receiver) private view {
        require(sender != receiver, "sender can not be receiver");
        require(sender != hub && receiver != hub, "hub can not be sender or receiver");
        require(sender != address(this) && receiver != address(this), "channel manager can not be sender or receiver");
    }

    // A sender-signed thread state (an update: not checked against the thread root).
    function _verifyThreadSig(
        address sender, address receiver, uint256 threadId,
        uint256[2] calldata weiBalances, uint256[2] calldata tokenBalances, uint256 txCount, string calldata sig
    ) private view {
        _checkThreadParties(sender, receiver);
        bytes32 h = _threadHash(sender, receiver, threadId, weiBalances, tokenBalances, txCount);
        require(_recover(h, sig) == sender, "signature invalid");
    }

    // An initial thread state: sender-signed and contained in the channel's thread root.
    function _verifyThread(
        address sender, address receiver, uint256 threadId,
        uint256[2] calldata weiBalances, uint256[2] calldata tokenBalances, uint256 txCount,
        bytes calldata proof, string calldata sig, bytes32 threadRoot
    ) private view {
        _checkThreadParties(sender, receiver);
        bytes32 h = _threadHash(sender, receiver, threadId, weiBalances, tokenBalances, txCount);
        require(_recover(h, sig) == sender, "signature invalid");
        require(_isContained(h, proof, threadRoot), "initial thread state is not contained in threadRoot");
    }

    // v1's proof format: 32-byte words, the first is the leaf itself, then one sibling per
    // level; each step hashes the sorted pair. The first word must equal the leaf.
    function _isContained(bytes32 leaf, bytes calldata proof, bytes32 root) private pure returns (bool) {
        if (proof.length < 32 || proof.length % 32 != 0) return false;
        if (bytes32(proof[0:32]) != leaf) return false;
        bytes32 cursor = leaf;
        for (uint256 i = 32; i < proof.length; i += 32) {
            bytes32 e = bytes32(proof[i:i + 32]);
            cursor = cursor < e ? keccak256(abi.encodePacked(cursor, e)) : keccak256(abi.encodePacked(e, cursor));
        }
        return cursor == root;
    }

    // eth_sign recovery of a "0x" + 130-hex signature string (r || s || v).
    function _recover(bytes32 hash, string calldata sig) private pure returns (address) {
        bytes calldata s = bytes(sig);
        require(s.length == 132 && s[0] == "0" && (s[1] == "x" || s[1] == "X"), "signature must be 0x + 130 hex");
        uint256 r = _hexWord(s, 2);
        uint256 ss = _hexWord(s, 66);
        uint256 v = (_nibble(uint8(s[130])) << 4) | _nibble(uint8(s[131]));
        if (v < 27) v += 27;
        require(v == 27 || v == 28, "signature v must be 0, 1, 27 or 28");
        require(ss <= HALF_N, "signature s must be low (EIP-2)");
        bytes32 digest = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", hash));
        address signer = ecrecover(digest, uint8(v), bytes32(r), bytes32(ss));
        require(signer != address(0), "signature invalid");
        return signer;
    }

    function _hexWord(bytes calldata s, uint256 start) private pure returns (uint256 w) {
        unchecked {
            for (uint256 i = start; i < start + 64; ++i) {
                w = (w << 4) | _nibble(uint8(s[i]));
            }
        }
    }

    function _nibble(uint8 c) private pure returns (uint256) {
        if (c >= 48 && c <= 57) return c - 48;
        if (c >= 97 && c <= 102) return c - 87;
        if (c >= 65 && c <= 70) return c - 55;
        revert("signature must be 0x + 130 hex");
    }

    // ETH out by call (no 2300-gas stipend limit); a failing recipient reverts the whole.
    function _sendWei(address to, uint256 amount) private {
        if (amount == 0) return;
        (bool ok, ) = to.call{value: amount}("");
        require(ok, "wei transfer failed");
    }

    // Settlement payouts: push each amount; one that is refused is credited to `to`
    // (withdrawOwed) so that no recipient can block a settlement. Callers have already
    // taken the amounts out of the channel totals.
    function _payOrCredit(address to, uint256 weiAmount, uint256 tokenAmount) private {
        uint256 weiOwed = weiAmount;
        uint256 tokenOwed = tokenAmount;
        if (weiAmount > 0) {
            bool ok;
            // no return data is copied: a recipient can not make the copy cost gas
            assembly ("memory-safe") {
                ok := call(gas(), to, weiAmount, 0, 0, 0, 0)
            }
            if (ok) weiOwed = 0;
        }
        if (tokenAmount > 0 && _trySendToken(to, tokenAmount)) tokenOwed = 0;
        if (weiOwed > 0 || tokenOwed > 0) {
            owedWei[to] += weiOwed;
            owedTokens[to] += tokenOwed;
            totalOwedWei += weiOwed;
            totalOwedTokens += tokenOwed;
            emit DidCreditOwed(to, weiOwed, tokenOwed);
        }
    }

    // As _sendToken, but reports failure instead of reverting (a return value other
    // than none or true counts as failure).
    function _trySendToken(address to, uint256 amount) private returns (bool) {
        address token = address(approvedToken);
        require(token != address(0), "no token configured");
        if (token.code.length == 0) return false;
        (bool ok, bytes memory ret) = token.call(abi.encodeCall(IERC20Minimal.transfer, (to, amount)));
        if (!ok) return false;
        if (ret.length == 0) return true;
        if (ret.length < 32) return false;
        return abi.decode(ret, (uint256)) == 1;
    }

    function _sendToken(address to, uint256 amount) private {
        if (amount == 0) return;
        _tokenCall(abi.encodeCall(IERC20Minimal.transfer, (to, amount)), "token transfer failed");
    }

    function _pullToken(address from, uint256 amount) private {
        if (amount == 0) return;
        _tokenCall(abi.encodeCall(IERC20Minimal.transferFrom, (from, address(this), amount)),
            "user token deposit failed");
    }

    // Tokens that return nothing (USDT) are accepted; one that returns false, reverts or
    // has no code fails the call.
    function _tokenCall(bytes memory data, string memory err) private {
        require(address(approvedToken) != address(0), "no token configured");
        require(address(approvedToken).code.length > 0, err);
        (bool ok, bytes memory ret) = address(approvedToken).call(data);
        require(ok && (ret.length == 0 || (ret.length >= 32 && abi.decode(ret, (bool)))), err);
    }
}
