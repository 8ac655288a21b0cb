// SPDX-License-Identifier: MIT
// A channel user that is a contract: it refuses plain ETH until its owner tells it to
// accept, and forwards calls (with value) from its owner, so it can run a hub-signed
// userAuthorizedUpdate and later withdrawOwed. For picopay's chain tests only.
// Never deploy it anywhere but a local dev chain.
pragma solidity 0.8.28;

contract RefusingReceiver {
    address public immutable owner;
    bool public accepting;

    constructor() {
        owner = msg.sender;
    }

    modifier onlyOwner() {
        require(msg.sender == owner, "only owner");
        _;
    }

    function setAccepting(bool a) external onlyOwner {
        accepting = a;
    }

    // Calls `target` with `value` wei of this call's msg.value (or of its own balance);
    // a revert is passed on with its reason.
    function exec(address target, uint256 value, bytes calldata data) external payable onlyOwner
        returns (bytes memory ret)
    {
        bool ok;
        (ok, ret) = target.call{value: value}(data);
        if (!ok) {
            assembly {
                revert(add(ret, 32), mload(ret))
            }
        }
    }

    receive() external payable {
        require(accepting, "RefusingReceiver: not accepting ETH");
    }
}
