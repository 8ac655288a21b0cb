#!/usr/bin/env node
// Starts a local dev chain (ganache, pinned in package-lock.json) on 127.0.0.1 only.
//
//   node scripts/devchain.js [--port N] [--account 0xKEY[,WEI]]... [--chain-id N]
//                            [--port-file FILE] [--watch-stdin]
//
// --port 0 (the default) picks a free port. Without --account, ten deterministic
// accounts (ganache's fixed mnemonic) with 1000 ETH each are funded. Blocks are mined
// at once per transaction (instamine); tests move time with evm_increaseTime/evm_mine.
// When listening it prints ONE line of JSON on stdout and flushes it:
//   {"url":"http://127.0.0.1:PORT","port":PORT,"chainId":1337,
//    "accounts":[{"address":"0x..","privateKey":"0x.."},...]}
// --port-file writes the URL to FILE as well; --watch-stdin exits when stdin closes (so a
// test fixture that dies never leaves a chain behind). SIGTERM/SIGINT stop it cleanly.
'use strict';
const net = require('net');
const fs = require('fs');
const ganache = require('ganache');

function usage(msg) {
  process.stderr.write(`devchain: ${msg}\n`);
  process.exit(2);
}

const args = process.argv.slice(2);
let port = 0;
let chainId = 1337;
let portFile = null;
let watchStdin = false;
const accounts = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => (i + 1 < args.length ? args[++i] : usage(`${a} needs a value`));
  if (a === '--port') port = Number(next());
  else if (a === '--chain-id') chainId = Number(next());
  else if (a === '--port-file') portFile = next();
  else if (a === '--watch-stdin') watchStdin = true;
  else if (a === '--account') {
    const [key, bal] = next().split(',');
    if (!/^0x[0-9a-fA-F]{64}$/.test(key)) usage(`bad private key in --account`);
    accounts.push({ secretKey: key, balance: '0x' + BigInt(bal || '1000000000000000000000').toString(16) });
  } else usage(`unknown argument ${a}`);
}
if (!Number.isInteger(port) || port < 0 || port > 65535) usage('bad --port');

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

(async () => {
  if (port === 0) port = await freePort();
  const options = {
    chain: { chainId, networkId: chainId, hardfork: 'shanghai' },
    logging: { quiet: true },
    miner: { instamine: 'eager' },
    wallet: accounts.length ? { accounts } : { deterministic: true, totalAccounts: 10 },
  };
  const server = ganache.server(options);
  const stop = async (code) => {
    try { await server.close(); } catch (e) { /* already closed */ }
    process.exit(code);
  };
  process.on('SIGTERM', () => stop(0));
  process.on('SIGINT', () => stop(0));
  if (watchStdin) {
    process.stdin.on('end', () => stop(0));
    process.stdin.on('close', () => stop(0));
    process.stdin.resume();
  }
  server.listen(port, '127.0.0.1', async (err) => {
    if (err) {
      process.stderr.write(`devchain: cannot listen on 127.0.0.1:${port}: ${err.message || err}\n`);
      process.exit(1);
    }
    const init = await server.provider.getInitialAccounts();
    const list = Object.entries(init).map(([address, v]) => ({ address, privateKey: v.secretKey }));
    const url = `http://127.0.0.1:${port}`;
    if (portFile) fs.writeFileSync(portFile, url + '\n');
    process.stdout.write(JSON.stringify({ url, port, chainId, accounts: list }) + '\n');
  });
})().catch((e) => {
  process.stderr.write(`devchain: ${e.stack || e}\n`);
  process.exit(1);
});
