#!/usr/bin/env node
// Independent cross-check of picopay's Connext v1 state hashes, eth_sign signatures,
// address derivation, signer recovery and keccak-256 against ethers v6 (pinned in
// package-lock.json).
//
// The state-hash preimages are built here byte by byte from the layouts in
// docs/design.md §3 (ChannelManager._verifySig / _verifyThread, abi.encodePacked with
// array elements padded to 32 bytes and lone addresses not), so the check does not
// share any packing code with picopay or with ethers' solidityPacked.
//
// Usage:
//   node crosscheck.mjs --picopay <path to picopay CLI> [--seed <uint>] [--n <states per kind>]
//                       [--jobs <concurrent CLI processes>] [--keccak-max <max bytes>]
//   node crosscheck.mjs --self-test      (checks the JS model against docs/design.md vectors only)
//
// Exits 0 when everything matched; on the first mismatch prints what was sent, what
// was expected and what picopay printed (plus a diagnosis of known packing mistakes),
// then exits 1. Always ends with a line "crosscheck: N passed, M failed".

import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import {
  keccak256,
  hashMessage,
  getBytes,
  hexlify,
  getAddress,
  computeAddress,
  recoverAddress,
  SigningKey,
  Signature,
  version as ethersVersion,
} from "ethers";

// ---------------------------------------------------------------------------
// Command line

function usage(msg) {
  if (msg) process.stderr.write(`crosscheck: ${msg}\n`);
  process.stderr.write(
    "usage: node crosscheck.mjs --picopay <path> [--seed <uint>] [--n <count>] [--jobs <k>] [--keccak-max <bytes>]\n" +
      "       node crosscheck.mjs --self-test\n",
  );
  process.exit(2);
}

const opts = { picopay: null, seed: null, n: 50, jobs: 8, keccakMax: 300, selfTest: false, timeoutMs: 30000 };
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const val = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    const uint = (s, name) => {
      if (!/^[0-9]+$/.test(s)) usage(`${name} must be a non-negative integer, got '${s}'`);
      return s;
    };
    if (a === "--picopay") opts.picopay = val();
    else if (a === "--seed") opts.seed = BigInt(uint(val(), "--seed"));
    else if (a === "--n") opts.n = Number(uint(val(), "--n"));
    else if (a === "--jobs") opts.jobs = Math.max(1, Number(uint(val(), "--jobs")));
    else if (a === "--keccak-max") opts.keccakMax = Number(uint(val(), "--keccak-max"));
    else if (a === "--timeout-ms") opts.timeoutMs = Number(uint(val(), "--timeout-ms"));
    else if (a === "--self-test") opts.selfTest = true;
    else if (a === "-h" || a === "--help") usage();
    else usage(`unknown argument '${a}'`);
  }
  if (!opts.selfTest) {
    if (!opts.picopay) usage("--picopay is required");
    if (!existsSync(opts.picopay)) usage(`picopay binary not found: ${opts.picopay}`);
  }
  if (opts.seed === null) {
    opts.seed = BigInt(Date.now()) * 1000n + BigInt(Math.floor(Math.random() * 1000));
  }
}

// ---------------------------------------------------------------------------
// Deterministic PRNG: splitmix64 over BigInt (same seed -> same states on any machine).

const MASK64 = (1n << 64n) - 1n;
let prngState = opts.seed & MASK64;
function next64() {
  prngState = (prngState + 0x9e3779b97f4a7c15n) & MASK64;
  let z = prngState;
  z = ((z ^ (z >> 30n)) * 0xbf58476d1ce4e5b9n) & MASK64;
  z = ((z ^ (z >> 27n)) * 0x94d049bb133111ebn) & MASK64;
  return z ^ (z >> 31n);
}
function randInt(n) {
  // uniform in [0, n) for n <= 2^32 (bias negligible: 64-bit source)
  return Number(next64() % BigInt(n));
}
function randBytes(len) {
  const out = new Uint8Array(len);
  for (let i = 0; i < len; i += 8) {
    let v = next64();
    for (let j = 0; j < 8 && i + j < len; j++) {
      out[i + j] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  return out;
}
function randBigBits(bits) {
  if (bits === 0) return 0n;
  const bytes = randBytes(Math.ceil(bits / 8));
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return v & ((1n << BigInt(bits)) - 1n);
}
function pick(arr) {
  return arr[randInt(arr.length)];
}
function shuffle(arr) {
  for (let i = arr.length - 1; i > 0; i--) {
    const j = randInt(i + 1);
    [arr[i], arr[j]] = [arr[j], arr[i]];
  }
  return arr;
}

// ---------------------------------------------------------------------------
// Value generators

const U256_MAX = (1n << 256n) - 1n;
const U53_MAX = 2n ** 53n - 1n;
const SECP_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

function randU256() {
  const r = randInt(8);
  if (r === 0) return pick([0n, 1n, U256_MAX, U256_MAX - 1n, 1n << 255n, (1n << 255n) - 1n, (1n << 128n), (1n << 64n) - 1n]);
  if (r === 1) {
    const k = BigInt(randInt(257));
    return pick([(1n << k) - 1n, k === 256n ? U256_MAX : 1n << k]);
  }
  // random magnitude: uniform bit length 0..256, then random bits below it
  const bits = randInt(257);
  if (bits === 0) return 0n;
  return (1n << BigInt(bits - 1)) | randBigBits(bits - 1);
}
function randU53() {
  const r = randInt(6);
  if (r === 0) return pick([0n, 1n, U53_MAX, U53_MAX - 1n, 2n ** 32n, 2n ** 32n - 1n, 2n ** 31n]);
  const bits = randInt(54);
  if (bits === 0) return 0n;
  return (1n << BigInt(bits - 1)) | randBigBits(bits - 1);
}
function randAddress() {
  const raw = hexlify(randBytes(20));
  // Connext clients send either lowercase or EIP-55 checksummed addresses.
  return randInt(2) === 0 ? raw : getAddress(raw);
}
function randBytes32Hex() {
  if (randInt(8) === 0) return "0x" + "00".repeat(32);
  return hexlify(randBytes(32));
}
function randPrivateKey() {
  const r = randInt(16);
  if (r === 0) return "0x" + (1n).toString(16).padStart(64, "0");
  if (r === 1) return "0x" + (SECP_N - 1n).toString(16).padStart(64, "0");
  for (;;) {
    const k = BigInt(hexlify(randBytes(32)));
    if (k >= 1n && k < SECP_N) return "0x" + k.toString(16).padStart(64, "0");
  }
}

// ---------------------------------------------------------------------------
// The JS model: preimages (docs/design.md §3), hashes, eth_sign signatures

const CHANNEL_AMOUNTS = [
  "balanceWeiHub", "balanceWeiUser", "balanceTokenHub", "balanceTokenUser",
  "pendingDepositWeiHub", "pendingDepositWeiUser", "pendingDepositTokenHub", "pendingDepositTokenUser",
  "pendingWithdrawalWeiHub", "pendingWithdrawalWeiUser", "pendingWithdrawalTokenHub", "pendingWithdrawalTokenUser",
];
const CHANNEL_COUNTERS = ["txCountGlobal", "txCountChain", "threadCount", "timeout"];
const THREAD_AMOUNTS = ["balanceWeiSender", "balanceWeiReceiver", "balanceTokenSender", "balanceTokenReceiver"];
const THREAD_COUNTERS = ["threadId", "txCount"];

function hexOfAddress(a, name) {
  if (typeof a !== "string" || !/^0x[0-9a-fA-F]{40}$/.test(a)) throw new Error(`model: bad address ${name}=${a}`);
  return a.slice(2).toLowerCase();
}
function hexOfU256(v, name) {
  const b = BigInt(v);
  if (b < 0n || b > U256_MAX) throw new Error(`model: ${name} out of uint256 range`);
  return b.toString(16).padStart(64, "0");
}
function hexOfBytes32(v, name) {
  if (typeof v !== "string" || !/^0x[0-9a-fA-F]{64}$/.test(v)) throw new Error(`model: bad bytes32 ${name}=${v}`);
  return v.slice(2).toLowerCase();
}

// Returns [[fieldName, hex], ...] in preimage order. `variant` switches on known
// mistakes, used only to diagnose a mismatch.
function channelFields(s, variant = {}) {
  const addrLone = (a, n) => (variant.contractPadded ? "0".repeat(24) : "") + hexOfAddress(a, n);
  const addrInArray = (a, n) => (variant.arrayAddrUnpadded ? "" : "0".repeat(24)) + hexOfAddress(a, n);
  const u = (n) => [n, hexOfU256(s[n], n)];
  const pendingOrder = (kind) =>
    variant.pendingFieldOrder
      ? [`pendingDeposit${kind}Hub`, `pendingDeposit${kind}User`, `pendingWithdrawal${kind}Hub`, `pendingWithdrawal${kind}User`]
      : [`pendingDeposit${kind}Hub`, `pendingWithdrawal${kind}Hub`, `pendingDeposit${kind}User`, `pendingWithdrawal${kind}User`];
  const pair = (a, b) => (variant.pairsSwapped ? [b, a] : [a, b]);
  return [
    ["contractAddress", addrLone(s.contractAddress, "contractAddress")],
    ["user", addrInArray(s.user, "user")],
    ["recipient", addrInArray(s.recipient, "recipient")],
    ...pair("balanceWeiHub", "balanceWeiUser").map(u),
    ...pair("balanceTokenHub", "balanceTokenUser").map(u),
    ...pendingOrder("Wei").map(u),
    ...pendingOrder("Token").map(u),
    ...(variant.txCountSwapped ? ["txCountChain", "txCountGlobal"] : ["txCountGlobal", "txCountChain"]).map(u),
    ["threadRoot", hexOfBytes32(s.threadRoot, "threadRoot")],
    u("threadCount"),
    u("timeout"),
  ];
}
function threadFields(s, variant = {}) {
  const addr = (a, n) => (variant.addrPadded ? "0".repeat(24) : "") + hexOfAddress(a, n);
  const u = (n) => [n, hexOfU256(s[n], n)];
  return [
    ["contractAddress", addr(s.contractAddress, "contractAddress")],
    ["sender", addr(s.sender, "sender")],
    ["receiver", addr(s.receiver, "receiver")],
    u("threadId"),
    ...(variant.pairsSwapped ? ["balanceWeiReceiver", "balanceWeiSender"] : ["balanceWeiSender", "balanceWeiReceiver"]).map(u),
    ...(variant.pairsSwapped ? ["balanceTokenReceiver", "balanceTokenSender"] : ["balanceTokenSender", "balanceTokenReceiver"]).map(u),
    u("txCount"),
  ];
}
const CHANNEL_VARIANTS = {
  "lone contract address padded to 32 bytes": { contractPadded: true },
  "user/recipient (address[2] elements) not padded to 32 bytes": { arrayAddrUnpadded: true },
  "pending updates in JSON order [hubDeposit, userDeposit, hubWithdrawal, userWithdrawal]": { pendingFieldOrder: true },
  "balance pairs swapped ([user, hub])": { pairsSwapped: true },
  "txCount pair swapped ([chain, global])": { txCountSwapped: true },
};
const THREAD_VARIANTS = {
  "addresses padded to 32 bytes": { addrPadded: true },
  "balance pairs swapped ([receiver, sender])": { pairsSwapped: true },
};

const preimageHex = (fields) => "0x" + fields.map(([, h]) => h).join("");
const channelPreimage = (s, v) => preimageHex(channelFields(s, v));
const threadPreimage = (s, v) => preimageHex(threadFields(s, v));
const model = {
  hash: (kind, s) => keccak256(kind === "channel" ? channelPreimage(s) : threadPreimage(s)),
  // eth_sign: keccak256("\x19Ethereum Signed Message:\n32" ++ hash), RFC 6979, low-S, v = 27 + recid
  sign: (hash, pk) => new SigningKey(pk).sign(hashMessage(getBytes(hash))).serialized,
  recover: (hash, sig) => recoverAddress(hashMessage(getBytes(hash)), sig),
  address: (pk) => computeAddress(pk),
  keccak: (hex) => keccak256(hex),
};

// ---------------------------------------------------------------------------
// Random states (JSON text: random key order, sometimes pretty-printed)

function channelState() {
  const s = {
    contractAddress: randAddress(),
    user: randAddress(),
    recipient: randInt(4) === 0 ? null : randAddress(),
  };
  if (s.recipient === null) s.recipient = s.user; // Connext: recipient usually == user
  for (const f of CHANNEL_AMOUNTS) s[f] = randU256().toString();
  for (const f of CHANNEL_COUNTERS) s[f] = randU53();
  s.threadRoot = randBytes32Hex();
  return s;
}
function threadState() {
  const s = { contractAddress: randAddress(), sender: randAddress(), receiver: randAddress() };
  for (const f of THREAD_AMOUNTS) s[f] = randU256().toString();
  for (const f of THREAD_COUNTERS) s[f] = randU53();
  return s;
}
// A value written into the JSON text verbatim (used for malformed numbers).
class RawJson {
  constructor(text) {
    this.text = text;
  }
}
// JSON with counters (BigInt) as plain JSON numbers; they are <= 2^53-1 so exact.
function toJson(obj, pretty) {
  const keys = shuffle(Object.keys(obj));
  const parts = keys.map((k) => {
    const v = obj[k];
    const val = typeof v === "bigint" ? v.toString() : v instanceof RawJson ? v.text : JSON.stringify(v);
    return JSON.stringify(k) + (pretty ? ": " : ":") + val;
  });
  return pretty ? "{\n  " + parts.join(",\n  ") + "\n}\n" : "{" + parts.join(",") + "}";
}

// ---------------------------------------------------------------------------
// Running the CLI with bounded concurrency

const running = new Set();
function runCli(args, stdin) {
  return new Promise((resolve) => {
    const child = spawn(opts.picopay, args, { stdio: ["pipe", "pipe", "pipe"] });
    running.add(child);
    let stdout = "";
    let stderr = "";
    let spawnError = null;
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
    child.stdout.setEncoding("utf8").on("data", (d) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d) => (stderr += d));
    child.stdin.on("error", () => {}); // CLI may exit before reading stdin (e.g. on bad args)
    child.on("error", (e) => (spawnError = e));
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, signal, stdout, stderr, spawnError });
    });
    child.stdin.end(stdin ?? "");
  });
}

let passed = 0;
let failed = 0;
let aborted = false;

class Mismatch extends Error {}

function describeRun(r) {
  const lines = [];
  if (r.spawnError) lines.push(`  spawn error: ${r.spawnError.message}`);
  lines.push(`  exit: ${r.signal ? "signal " + r.signal : r.code}`);
  lines.push(`  stdout: ${JSON.stringify(r.stdout)}`);
  lines.push(`  stderr: ${JSON.stringify(r.stderr)}`);
  return lines.join("\n");
}
function fail(title, details) {
  throw new Mismatch(`MISMATCH: ${title}\n${details}`);
}
function cmdLine(args) {
  return "picopay " + args.map((a) => (/^[\w./:-]+$/.test(a) ? a : JSON.stringify(a))).join(" ");
}

// One positive check: run, require exit 0 and stdout == expected (+ optional "\n").
async function expectOutput(name, args, stdin, expected, { pattern, diagnose } = {}) {
  const r = await runCli(args, stdin);
  const out = r.stdout.endsWith("\n") ? r.stdout.slice(0, -1) : r.stdout;
  let problem = null;
  if (r.spawnError || r.code !== 0) problem = "picopay failed on valid input";
  else if (pattern && !pattern.test(out)) problem = `output not in the contracted format ${pattern}`;
  else if (out !== expected) problem = "output differs from ethers";
  if (problem) {
    let details = `  check: ${name}\n  command: ${cmdLine(args)}\n`;
    if (stdin !== undefined) details += `  stdin: ${stdin.includes("\n") ? "\n" + stdin : stdin}\n`;
    details += `  expected: ${expected}\n  got:\n${describeRun(r)}`;
    if (diagnose) details += "\n" + diagnose(out);
    fail(`${name}: ${problem}`, details);
  }
  passed++;
}

// One negative check: bad input -> non-zero exit, nothing on stdout, one line on stderr.
async function expectReject(name, args, stdin) {
  const r = await runCli(args, stdin);
  const errLine = r.stderr.replace(/\n$/, "");
  let problem = null;
  if (r.spawnError) problem = "could not run picopay";
  else if (r.code === 0) problem = "picopay accepted bad input (exit 0)";
  else if (r.signal) problem = `picopay died with ${r.signal} instead of rejecting`;
  else if (r.stdout !== "") problem = "picopay printed on stdout while rejecting";
  else if (errLine === "" || errLine.includes("\n")) problem = "stderr is not exactly one line";
  if (problem) {
    let details = `  check: ${name}\n  command: ${cmdLine(args)}\n`;
    if (stdin !== undefined) details += `  stdin: ${stdin}\n`;
    details += `  expected: non-zero exit, empty stdout, one line on stderr\n  got:\n${describeRun(r)}`;
    fail(`${name}: ${problem}`, details);
  }
  passed++;
}

async function runPool(tasks, limit) {
  let i = 0;
  async function worker() {
    while (!aborted && i < tasks.length) {
      const t = tasks[i++];
      try {
        await t();
      } catch (e) {
        if (aborted) return;
        aborted = true;
        failed++;
        throw e;
      }
    }
  }
  const workers = Array.from({ length: Math.min(limit, tasks.length) }, worker);
  const results = await Promise.allSettled(workers);
  const bad = results.find((x) => x.status === "rejected");
  if (bad) throw bad.reason;
}

// ---------------------------------------------------------------------------
// Diagnosis helpers

const HASH_RE = /^0x[0-9a-f]{64}$/;
const SIG_RE = /^0x[0-9a-f]{130}$/;
const ADDR_RE = /^0x[0-9a-fA-F]{40}$/;

function layoutDump(fields) {
  let off = 0;
  const lines = ["  JS preimage layout (offset bytes: field = hex):"];
  for (const [n, h] of fields) {
    lines.push(`    ${String(off).padStart(3)}+${String(h.length / 2).padStart(2)}: ${n} = ${h}`);
    off += h.length / 2;
  }
  lines.push(`    total ${off} bytes`);
  return lines.join("\n");
}
function diagnoseHash(kind, s) {
  return (got) => {
    const lines = [];
    const variants = kind === "channel" ? CHANNEL_VARIANTS : THREAD_VARIANTS;
    for (const [desc, v] of Object.entries(variants)) {
      const pre = kind === "channel" ? channelPreimage(s, v) : threadPreimage(s, v);
      if (keccak256(pre) === got) lines.push(`  DIAGNOSIS: picopay's hash equals the preimage with ${desc}`);
    }
    if (lines.length === 0) lines.push("  DIAGNOSIS: matches none of the known packing mistakes; compare field by field:");
    lines.push(layoutDump(kind === "channel" ? channelFields(s) : threadFields(s)));
    return lines.join("\n");
  };
}
function diagnoseSig(hash, pk) {
  return (got) => {
    if (!SIG_RE.test(got)) return "";
    const exp = Signature.from(model.sign(hash, pk));
    const r = "0x" + got.slice(2, 66);
    const sv = BigInt("0x" + got.slice(66, 130));
    const v = parseInt(got.slice(130), 16);
    const lines = [`  expected r=${exp.r} s=${exp.s} v=${exp.v}`, `  got      r=${r} s=0x${sv.toString(16).padStart(64, "0")} v=${v}`];
    const addr = model.address(pk);
    if (r === exp.r && sv === SECP_N - BigInt(exp.s)) lines.push("  DIAGNOSIS: s is the high-S form (n - s): not normalized to low-S (EIP-2)");
    if (r === exp.r && BigInt(exp.s) === sv && v !== exp.v) lines.push(`  DIAGNOSIS: r and s match, v differs (expected ${exp.v} = 27 + recid)`);
    try {
      const vv = v < 27 ? v + 27 : v;
      const sig = { r, s: "0x" + sv.toString(16).padStart(64, "0"), v: vv };
      if (recoverAddress(hash, sig) === addr) lines.push("  DIAGNOSIS: signature is over the raw state hash, without the eth_sign prefix");
      else if (recoverAddress(hashMessage(getBytes(hash)), sig) === addr)
        lines.push("  DIAGNOSIS: signature is valid for the key but not the RFC 6979 deterministic one");
    } catch {
      /* unparsable signature: nothing more to say */
    }
    return lines.join("\n");
  };
}

// ---------------------------------------------------------------------------
// docs/design.md §3 reference vectors

const REF_KEY = "0x" + "22".repeat(32);
const REF_CHANNEL = {
  contractAddress: "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390",
  user: "0x1563915e194D8CfBA1943570603F7606A3115508",
  recipient: "0x1563915e194D8CfBA1943570603F7606A3115508",
  balanceWeiHub: "0", balanceWeiUser: "0", balanceTokenHub: "0", balanceTokenUser: "0",
  pendingDepositWeiHub: "0", pendingDepositWeiUser: "100", pendingDepositTokenHub: "0", pendingDepositTokenUser: "0",
  pendingWithdrawalWeiHub: "0", pendingWithdrawalWeiUser: "0", pendingWithdrawalTokenHub: "0", pendingWithdrawalTokenUser: "0",
  txCountGlobal: 1n, txCountChain: 1n, threadCount: 0n, timeout: 0n,
  threadRoot: "0x" + "00".repeat(32),
};
const REF_HASH = "0x94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97";
const REF_SIG =
  "0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd111d3f7c772a27df6a61fdb9010d9ace38a5bbeb0a83902a1ba0c6fc61b97648851c";
const REF_ADDR = "0x1563915e194D8CfBA1943570603F7606A3115508";
const KECCAK_VECTORS = [
  ["", "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"],
  ["616263", "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"],
];
const SHA3_256_EMPTY = "0xa7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a";

// The JS model must reproduce docs/design.md before it may judge picopay.
function selfTest() {
  const problems = [];
  const pre = channelPreimage(REF_CHANNEL);
  if ((pre.length - 2) / 2 !== 628) problems.push(`channel preimage is ${(pre.length - 2) / 2} bytes, not 628`);
  const t = threadState();
  const tpre = threadPreimage(t);
  if ((tpre.length - 2) / 2 !== 252) problems.push(`thread preimage is ${(tpre.length - 2) / 2} bytes, not 252`);
  const h = model.hash("channel", REF_CHANNEL);
  if (h !== REF_HASH) problems.push(`reference hash ${h} != ${REF_HASH}`);
  const sig = model.sign(REF_HASH, REF_KEY);
  if (sig !== REF_SIG) problems.push(`reference signature ${sig} != ${REF_SIG}`);
  if (model.address(REF_KEY) !== REF_ADDR) problems.push(`address of 0x22..22 is ${model.address(REF_KEY)}`);
  if (model.recover(REF_HASH, REF_SIG) !== REF_ADDR) problems.push("reference signature does not recover to the reference address");
  for (const [m, d] of KECCAK_VECTORS) if (model.keccak("0x" + m) !== d) problems.push(`keccak(${m}) != ${d}`);
  if (problems.length) {
    process.stderr.write("crosscheck: the JS model disagrees with docs/design.md (fix the model or the notes first):\n");
    for (const p of problems) process.stderr.write(`  - ${p}\n`);
    process.stdout.write("crosscheck: 0 passed, 1 failed\n");
    process.exit(1);
  }
}

// ---------------------------------------------------------------------------
// Check builders

function stateChecks(kind, s, pk, json) {
  const hash = model.hash(kind, s);
  const sig = model.sign(hash, pk);
  const addr = model.address(pk);
  const label = (what) => `${kind} #${s.__index} ${what}`;
  delete s.__index;
  // docs/design.md §3: recover accepts v in {0,1} as well as {27,28}; feed both forms.
  const recSig = randInt(4) === 0 ? sig.slice(0, 130) + (parseInt(sig.slice(130), 16) - 27).toString(16).padStart(2, "0") : sig;
  const tasks = [
    () => expectOutput(label("hash"), ["hash", kind], json, hash, { pattern: HASH_RE, diagnose: diagnoseHash(kind, s) }),
    () => expectOutput(label("sign"), ["sign", kind, "--private-key", pk], json, sig, { pattern: SIG_RE, diagnose: diagnoseSig(hash, pk) }),
    () => expectOutput(label("address"), ["address", "--private-key", pk], undefined, addr, { pattern: ADDR_RE }),
    // recover is fed the ethers signature, so it is checked independently of picopay's sign
    () => expectOutput(label("recover"), ["recover", "--hash", hash, "--sig", recSig], undefined, addr, { pattern: ADDR_RE }),
  ];
  return tasks;
}

function keccakInput(bytes) {
  let hex = hexlify(bytes).slice(2);
  if (randInt(2)) hex = hex.toUpperCase();
  if (randInt(2)) hex = "0x" + hex;
  const lead = pick(["", "", " ", "\n", "\t "]);
  const trail = pick(["", "\n", "\n", " \n", "\r\n"]);
  return lead + hex + trail;
}

// ---------------------------------------------------------------------------
// Main

async function main() {
  selfTest();
  if (opts.selfTest) {
    process.stdout.write(`crosscheck: ethers ${ethersVersion}; JS model reproduces docs/design.md vectors\n`);
    passed = 1;
    return;
  }
  process.stdout.write(
    `crosscheck: seed ${opts.seed} (rerun with --seed ${opts.seed}), n=${opts.n} per kind, ` +
      `keccak lengths 0..${opts.keccakMax}, ethers ${ethersVersion}, picopay ${opts.picopay}\n`,
  );

  // Phase 1: docs/design.md reference vectors.
  const refTasks = [];
  for (const [m, d] of KECCAK_VECTORS) {
    for (const input of [m, "0x" + m, m + "\n"]) {
      refTasks.push(() =>
        expectOutput(`keccak vector '${m}' (input ${JSON.stringify(input)})`, ["keccak"], input, d, {
          pattern: HASH_RE,
          diagnose: (got) => (got === SHA3_256_EMPTY ? "  DIAGNOSIS: this is SHA3-256 (padding byte 0x06), Keccak needs 0x01" : ""),
        }),
      );
    }
  }
  refTasks.push(() =>
    expectOutput("docs/design.md reference channel hash", ["hash", "channel"], toJson(REF_CHANNEL, true), REF_HASH, {
      pattern: HASH_RE,
      diagnose: diagnoseHash("channel", REF_CHANNEL),
    }),
  );
  refTasks.push(() =>
    expectOutput("docs/design.md reference signature", ["sign", "channel", "--private-key", REF_KEY], toJson(REF_CHANNEL, false), REF_SIG, {
      pattern: SIG_RE,
      diagnose: diagnoseSig(REF_HASH, REF_KEY),
    }),
  );
  refTasks.push(() => expectOutput("docs/design.md reference address", ["address", "--private-key", REF_KEY], undefined, REF_ADDR, { pattern: ADDR_RE }));
  refTasks.push(() => expectOutput("docs/design.md reference recover", ["recover", "--hash", REF_HASH, "--sig", REF_SIG], undefined, REF_ADDR, { pattern: ADDR_RE }));
  // docs/design.md §3: accept v in {0,1} as well as {27,28} on input.
  const refSigV01 = REF_SIG.slice(0, 130) + (parseInt(REF_SIG.slice(130), 16) - 27).toString(16).padStart(2, "0");
  refTasks.push(() =>
    expectOutput("recover accepts v in {0,1} (docs/design.md §3)", ["recover", "--hash", REF_HASH, "--sig", refSigV01], undefined, REF_ADDR, {
      pattern: ADDR_RE,
    }),
  );
  await runPool(refTasks, opts.jobs);

  // Phase 2: keccak of random bytes, every length 0..keccakMax.
  const kTasks = [];
  for (let len = 0; len <= opts.keccakMax; len++) {
    const bytes = randBytes(len);
    const input = keccakInput(bytes);
    const expected = model.keccak(bytes);
    kTasks.push(() => expectOutput(`keccak of ${len} random bytes`, ["keccak"], input, expected, { pattern: HASH_RE }));
  }
  await runPool(kTasks, opts.jobs);

  // Phase 3: random channel and thread states, random keys.
  const sTasks = [];
  for (let i = 0; i < opts.n; i++) {
    const s = channelState();
    const pk = randPrivateKey();
    // Optional signatures must not change the hash: attach real ones sometimes.
    const h = model.hash("channel", s);
    const withSigs = { ...s };
    if (randInt(3) === 0) withSigs.sigUser = model.sign(h, randPrivateKey());
    if (randInt(3) === 0) withSigs.sigHub = model.sign(h, randPrivateKey());
    const json = toJson(withSigs, randInt(2) === 0);
    s.__index = i;
    sTasks.push(...stateChecks("channel", s, pk, json));
  }
  for (let i = 0; i < opts.n; i++) {
    const s = threadState();
    const pk = randPrivateKey();
    const withSig = { ...s };
    if (randInt(3) === 0) withSig.sigA = model.sign(model.hash("thread", s), pk);
    const json = toJson(withSig, randInt(2) === 0);
    s.__index = i;
    sTasks.push(...stateChecks("thread", s, pk, json));
  }
  await runPool(sTasks, opts.jobs);

  // Phase 4: bad input must be rejected (non-zero exit, empty stdout, one stderr line).
  const good = { ...REF_CHANNEL };
  const goodThread = threadState();
  const mutate = (base, f) => {
    const c = { ...base };
    f(c);
    return toJson(c, false);
  };
  const refSigHighS = (() => {
    const sg = Signature.from(REF_SIG);
    const s2 = (SECP_N - BigInt(sg.s)).toString(16).padStart(64, "0");
    const v2 = sg.v === 27 ? "1c" : "1b";
    return "0x" + sg.r.slice(2) + s2 + v2;
  })();
  const nTasks = [
    ["channel amount 2^256", ["hash", "channel"], mutate(good, (c) => (c.balanceWeiUser = (U256_MAX + 1n).toString()))],
    ["channel amount -1", ["hash", "channel"], mutate(good, (c) => (c.balanceTokenHub = "-1"))],
    ["channel amount not decimal", ["hash", "channel"], mutate(good, (c) => (c.pendingDepositWeiUser = "12a"))],
    ["channel counter -1", ["hash", "channel"], mutate(good, (c) => (c.txCountGlobal = -1n))],
    ["channel counter 1.5", ["hash", "channel"], mutate(good, (c) => (c.timeout = new RawJson("1.5")))],
    ["channel counter 2^53", ["hash", "channel"], mutate(good, (c) => (c.threadCount = 2n ** 53n))],
    ["channel address 19 bytes", ["hash", "channel"], mutate(good, (c) => (c.user = "0x" + "ab".repeat(19)))],
    ["channel address not hex", ["hash", "channel"], mutate(good, (c) => (c.contractAddress = "0x" + "zz".repeat(20)))],
    ["channel threadRoot 31 bytes", ["hash", "channel"], mutate(good, (c) => (c.threadRoot = "0x" + "00".repeat(31)))],
    ["channel missing balanceWeiHub", ["hash", "channel"], mutate(good, (c) => delete c.balanceWeiHub)],
    ["channel not JSON", ["hash", "channel"], "{not json"],
    ["channel empty stdin", ["hash", "channel"], ""],
    ["thread missing txCount", ["hash", "thread"], mutate(goodThread, (c) => delete c.txCount)],
    ["thread amount 2^256", ["hash", "thread"], mutate(goodThread, (c) => (c.balanceWeiSender = (U256_MAX + 1n).toString()))],
    ["sign with private key 0", ["sign", "channel", "--private-key", "0x" + "00".repeat(32)], toJson(good, false)],
    ["sign with private key n", ["sign", "channel", "--private-key", "0x" + SECP_N.toString(16)], toJson(good, false)],
    ["sign with 31-byte private key", ["sign", "thread", "--private-key", "0x" + "22".repeat(31)], toJson(goodThread, false)],
    ["address with private key n", ["address", "--private-key", "0x" + SECP_N.toString(16)], undefined],
    ["recover high-S signature (EIP-2)", ["recover", "--hash", REF_HASH, "--sig", refSigHighS], undefined],
    ["recover v = 29", ["recover", "--hash", REF_HASH, "--sig", REF_SIG.slice(0, 130) + "1d"], undefined],
    ["recover 63-byte hash", ["recover", "--hash", REF_HASH.slice(0, -2), "--sig", REF_SIG], undefined],
    ["keccak odd-length hex", ["keccak"], "abc\n"],
    ["keccak non-hex", ["keccak"], "zz\n"],
  ].map(([name, args, stdin]) => () => expectReject(`rejects ${name}`, args, stdin));
  await runPool(nTasks, opts.jobs);
}

main()
  .then(() => {
    process.stdout.write(`crosscheck: ${passed} passed, ${failed} failed\n`);
    process.exit(failed ? 1 : 0);
  })
  .catch((e) => {
    for (const c of running) c.kill("SIGKILL");
    if (!(e instanceof Mismatch)) failed = Math.max(failed, 1);
    process.stderr.write(`crosscheck: ${e instanceof Mismatch ? e.message : e.stack || e}\n`);
    process.stderr.write(`crosscheck: rerun with --seed ${opts.seed}\n`);
    process.stdout.write(`crosscheck: ${passed} passed, ${failed} failed\n`);
    process.exit(1);
  });
