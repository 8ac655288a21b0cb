// SPDX-License-Identifier: MIT
// An ERC-20 whose transfer/transferFrom/approve return nothing (as USDT on mainnet), for
// picopay's chain tests: anyone may mint, and anyone may block a recipient (as USDT's
// blacklist does: a transfer to it reverts).
// Never deploy it anywhere but a local dev chain.
pragma solidity 0.8.28;

contract NoReturnToken {
    string public constant name = "picopay no-return token";
    string public constant symbol = "PNR";
    uint8 public constant decimals = 18;
    uint256 public totalSupply;
    mapping(address => uint256) public balanceOf;
    mapping(address => mapping(address => uint256)) public allowance;
    mapping(address => bool) public blocked;

    event Transfer(address indexed from, address indexed to, uint256 value);
    event Approval(address indexed owner, address indexed spender, uint256 value);

    function mint(address to, uint256 value) external {
        totalSupply += value;
        balanceOf[to] += value;
        emit Transfer(address(0), to, value);
    }

    function transfer(address to, uint256 value) external {
        _move(msg.sender, to, value);
    }

    function approve(address spender, uint256 value) external {
        allowance[msg.sender][spender] = value;
        emit Approval(msg.sender, spender, value);
    }

    function transferFrom(address from, address to, uint256 value) external {
        uint256 a = allowance[from][msg.sender];
        require(a >= value, "allowance too small");
        if (a != type(uint256).max) allowance[from][msg.sender] = a - value;
        _move(from, to, value);
    }

    function setBlocked(address who, bool b) external {
        blocked[who] = b;
    }

    function _move(address from, address to, uint256 value) private {
        require(!blocked[to], "recipient blocked");
        require(balanceOf[from] >= value, "balance too small");
        balanceOf[from] -= value;
        balanceOf[to] += value;
        emit Transfer(from, to, value);
    }
}
