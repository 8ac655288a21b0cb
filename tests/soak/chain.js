#!/usr/bin/env node
// The soak campaign's chain node: contracts/scripts/devchain.js plus a database directory,
// so the chain survives kill -9 and a restart on the same port with every block, account
// and contract it had (ganache's database.dbPath, a LevelDB).
//
//   node tests/soak/chain.js --db DIR --port N [--account 0xKEY[,WEI]]...
//
// Prints one JSON line {"url":..,"port":..,"restored":true|false} when listening.
// The accounts are funded only when DIR is new (a restart keeps the chain's balances).
'use strict';
const path = require('path');
const fs = require('fs');
// ganache as pinned by contracts/package-lock.json (PICOPAY_GANACHE: another copy of it).
const ganache = require(process.env.PICOPAY_GANACHE ||
                        path.join(__dirname, '..', '..', 'contracts', 'node_modules', 'ganache'));

const args = process.argv.slice(2);
let port = 0, db = null;
const accounts = [];
function usage(m) { process.stderr.write(`soak chain: ${m}\n`); process.exit(2); }
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const next = () => (i + 1 < args.length ? args[++i] : usage(`${a} needs a value`));
  if (a === '--port') port = Number(next());
  else if (a === '--db') db = next();
  else if (a === '--account') {
    const [key, bal] = next().split(',');
    if (!/^0x[0-9a-fA-F]{64}$/.test(key)) usage('bad private key in --account');
    accounts.push({ secretKey: key, balance: '0x' + BigInt(bal || '1000000000000000000000').toString(16) });
  } else usage(`unknown argument ${a}`);
}
if (!db || !Number.isInteger(port) || port <= 0 || port > 65535) usage('--db DIR and --port N are required');
const restored = fs.existsSync(path.join(db, 'CURRENT')) || fs.existsSync(path.join(db, 'blocks'));
fs.mkdirSync(db, { recursive: true });
const server = ganache.server({
  chain: { chainId: 1337, networkId: 1337, hardfork: 'shanghai' },
  database: { dbPath: db },
  logging: { quiet: true },
  miner: { instamine: 'eager' },
  wallet: accounts.length ? { accounts } : { deterministic: true, totalAccounts: 10 },
});
const stop = async () => { try { await server.close(); } catch (e) { /* closed */ } process.exit(0); };
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
server.listen(port, '127.0.0.1', (err) => {
  if (err) { process.stderr.write(`soak chain: cannot listen on 127.0.0.1:${port}: ${err.message || err}\n`); process.exit(1); }
  process.stdout.write(JSON.stringify({ url: `http://127.0.0.1:${port}`, port, restored }) + '\n');
});
