#!/usr/bin/env node
// Decodes a raw signed Ethereum transaction with ethers v6 (an implementation that shares
// no code with picopay) and prints its fields as one JSON line: the sender recovered
// from the signature, to, value, data, nonce, gasPrice, gasLimit, chainId, type.
// Used by tests/firmware/eth_tx_test.cpp (the firmware's own deposit transaction).
//   node decode_tx.mjs 0x<raw transaction hex>
import { Transaction } from "ethers";

const raw = process.argv[2];
if (!raw) {
  process.stderr.write("usage: node decode_tx.mjs 0x<raw tx>\n");
  process.exit(2);
}
const tx = Transaction.from(raw);
process.stdout.write(
  JSON.stringify({
    from: tx.from.toLowerCase(),
    to: tx.to.toLowerCase(),
    value: tx.value.toString(),
    data: tx.data,
    nonce: tx.nonce,
    gasPrice: tx.gasPrice.toString(),
    gasLimit: tx.gasLimit.toString(),
    chainId: tx.chainId.toString(),
    type: tx.type,
    hash: tx.hash,
  }) + "\n",
);
