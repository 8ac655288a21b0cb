#!/usr/bin/env node
// Compiles the picopay contracts with the pinned solc-js (package-lock.json) and writes
// one artifact per contract: <outdir>/<Name>.json = { contractName, abi, bytecode,
// deployedBytecode, compiler }. bytecode is the 0x-hex creation code (no libraries, so
// fully linked). Usage: node scripts/compile.js <outdir>
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require('solc');

const outDir = path.resolve(process.argv[2] || 'build');
const root = path.resolve(__dirname, '..');
const sources = {
  'ChannelManager.sol': 'ChannelManager.sol',
  'test/TestToken.sol': 'test/TestToken.sol',
  'test/NoReturnToken.sol': 'test/NoReturnToken.sol',
  'test/RefusingReceiver.sol': 'test/RefusingReceiver.sol',
};
const wanted = {
  'ChannelManager.sol': 'ChannelManager',
  'test/TestToken.sol': 'TestToken',
  'test/NoReturnToken.sol': 'NoReturnToken',
  'test/RefusingReceiver.sol': 'RefusingReceiver',
};

const settings = {
  optimizer: { enabled: true, runs: 200 },
  viaIR: true,
  evmVersion: 'paris',
  outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
};
const input = { language: 'Solidity', sources: {}, settings };
for (const [name, file] of Object.entries(sources)) {
  input.sources[name] = { content: fs.readFileSync(path.join(root, file), 'utf8') };
}

const out = JSON.parse(solc.compile(JSON.stringify(input)));
let failed = false;
for (const e of out.errors || []) {
  process.stderr.write(e.formattedMessage || e.message);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);

fs.mkdirSync(outDir, { recursive: true });
for (const [src, name] of Object.entries(wanted)) {
  const c = out.contracts[src][name];
  const bytecode = '0x' + c.evm.bytecode.object;
  if (/__\$/.test(bytecode)) {
    process.stderr.write(`${name}: bytecode has unlinked library placeholders\n`);
    process.exit(1);
  }
  const artifact = {
    contractName: name,
    abi: c.abi,
    bytecode,
    deployedBytecode: '0x' + c.evm.deployedBytecode.object,
    compiler: { name: 'solc-js', version: solc.version(), settings: { optimizer: settings.optimizer, viaIR: settings.viaIR, evmVersion: settings.evmVersion } },
  };
  const file = path.join(outDir, name + '.json');
  const text = JSON.stringify(artifact, null, 1) + '\n';
  // Write only when changed so dependants are not rebuilt needlessly.
  if (!fs.existsSync(file) || fs.readFileSync(file, 'utf8') !== text) fs.writeFileSync(file, text);
  console.log(`${name}: ${(artifact.deployedBytecode.length - 2) / 2} bytes deployed, ${(bytecode.length - 2) / 2} bytes creation -> ${file}`);
}
