// picopay micro benchmarks (issue 6; docs/benchmarks.md).
//
// What each benchmark measures, and the baselines run in the same process:
//   keccak256/<bytes>        one-shot Keccak-256 of an input of that size
//   channel_hash             the 628-byte Connext channel preimage + keccak
//   thread_hash              the 252-byte thread preimage + keccak
//   encode_update / decode_update   wire codec, a Payment update request
//   encode_state / decode_state     wire codec, a full double-signed channel state
//   sign_eth / recover_eth   picopay Signer (eth_sign prefix hash + libsecp256k1 +
//                            the keccak of the public key for recover)
//   payment_cycle            one whole user -> hub payment: the user builds and signs the
//                            update and encodes it; the hub decodes it, rebuilds and
//                            validates the state, recovers the signer, countersigns and
//                            encodes the Ack; the user decodes the Ack and checks the
//                            countersignature. Two signatures and two recoveries.
//   payment_hub_side         the hub's share of the cycle only (decode .. encode Ack)
//   thread_payment           sender builds, signs and encodes a ThreadPayment (kind 0x06);
//                            the payee decodes it and checks it (thread_accept_state)
//   secp_sign / secp_recover bare libsecp256k1 (secp256k1_ecdsa_sign_recoverable on a
//                            32-byte digest; parse_compact + secp256k1_ecdsa_recover):
//                            the crypto bound. A payment cycle needs 2 x (sign + recover);
//                            the hub's share needs 1 x (sign + recover).
//   connext_update_json_encode / _decode   the same Payment update as Connext v1 JSON
//                            through cJSON: {"reason","args":{recipient,amountWei,
//                            amountToken},"txCount","sigUser"}
//   connext_state_json_encode / _decode    the same full double-signed state as Connext
//                            JSON (picopay_json: channel_to_json / channel_from_json)
// Sizes are reported as the benchmark counter "bytes" (constant per benchmark).
#include <benchmark/benchmark.h>
#include <cjson/cJSON.h>
#include <secp256k1.h>
#include <secp256k1_recovery.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"
#include "picopay/types.hpp"
#include "picopay/u256.hpp"

#ifdef PICOPAY_BENCH_HAVE_JSON
#include "picopay/agent/json_state.hpp"
#endif
#ifdef PICOPAY_BENCH_HAVE_MQTT
#include "picopay/mqtt/protocol.hpp"
#endif

using namespace picopay;

namespace {

[[noreturn]] void die(const char* what, Status st) {
  std::fprintf(stderr, "picopay_bench_micro: %s failed: %s\n", what, status_name(st));
  std::abort();
}
void check(Status st, const char* what) {
  if (st != Status::Ok) die(what, st);
}

PrivateKey key_of(uint8_t b) {
  PrivateKey k;
  std::memset(k.bytes, b, sizeof k.bytes);
  return k;
}

Address address_hex(const char* s) {
  Address a;
  check(address_parse(s, std::strlen(s), a), "address_parse");
  return a;
}

// Shared fixture data: keys, addresses, a funded channel and an open thread.
struct World {
  Signer userSigner, hubSigner, payeeSigner;
  PrivateKey userKey = key_of(0x22), hubKey = key_of(0x33);
  Address contract{}, user{}, hub{}, payee{};
  ChannelContext ctx{};
  ChannelState channel0{};  // user funded, hub 0, txCount 1
  ThreadState thread0{};    // sender = user, receiver = payee, threadId 1
  ThreadSet noThreads{};
  Hash32 scratch[4]{};

  World() {
    const uint8_t seedA[32] = {1}, seedB[32] = {2}, seedC[32] = {3};
    check(userSigner.init(seedA), "Signer::init");
    check(hubSigner.init(seedB), "Signer::init");
    check(payeeSigner.init(seedC), "Signer::init");
    contract = address_hex("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
    check(userSigner.address_of(userKey, user), "address_of");
    check(hubSigner.address_of(hubKey, hub), "address_of");
    PrivateKey pk = key_of(0x44);
    check(payeeSigner.address_of(pk, payee), "address_of");
    ctx.hub = hub;
    channel0 = channel_state_zero();
    channel0.contractAddress = contract;
    channel0.user = user;
    channel0.recipient = user;
    channel0.balanceWeiUser = U256::from_u64(1000000000000000000ULL);  // 1 ETH
    channel0.balanceWeiHub = U256::from_u64(500000000000000000ULL);
    channel0.txCountGlobal = 1;
    channel0.txCountChain = 1;
    noThreads = ThreadSet{nullptr, 0, 0, scratch};
    thread0 = thread_state_zero();
    thread0.contractAddress = contract;
    thread0.sender = user;
    thread0.receiver = payee;
    thread0.threadId = 1;
    thread0.balanceWeiSender = U256::from_u64(1000000000000000000ULL);
  }
};

World& world() {
  static World w;
  return w;
}

// A representative Payment update: 1000 wei to the hub, producing txCountGlobal 1000
// (the example of docs/wire-format.md's size table).
struct SampleUpdate {
  ChannelUpdate u;
  ChannelState next;
};
SampleUpdate sample_update() {
  World& w = world();
  ChannelState prev = w.channel0;
  prev.txCountGlobal = 999;
  SampleUpdate s{channel_update_make(UpdateReason::Payment), {}};
  s.u.payment.recipient = Party::Hub;
  s.u.payment.amountWei = U256::from_u64(1000);
  check(channel_propose(w.ctx, w.userSigner, w.userKey, Party::User, prev, w.noThreads, s.u, s.next),
        "channel_propose");
  return s;
}

// A full double-signed state with small balances and no threads.
SignedChannelState sample_state() {
  World& w = world();
  SampleUpdate su = sample_update();
  SignedChannelState s{};
  s.state = su.next;
  s.hasSigUser = true;
  s.sigUser = su.u.sig;
  s.hasSigHub = true;
  check(w.hubSigner.sign_eth(w.hubKey, channel_hash(su.next), s.sigHub), "sign_eth");
  return s;
}

// ---- the Ack reply (docs/mqtt-protocol.md: version | kind 0x10 | varint txCount | sig).
#ifdef PICOPAY_BENCH_HAVE_MQTT
// The hub's real Reply codec (agent/mqtt).
size_t encode_ack(uint64_t txCount, const Signature& sig, uint8_t* out) {
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Ack;
  r.txCountGlobal = txCount;
  r.sig = sig;
  std::vector<uint8_t> v;
  check(mqtt::encode_reply(r, v), "encode_reply");
  std::memcpy(out, v.data(), v.size());
  return v.size();
}
bool decode_ack(const uint8_t* in, size_t len, uint64_t& txCount, Signature& sig) {
  mqtt::Reply r;
  if (mqtt::decode_reply(in, len, r) != Status::Ok || r.kind != mqtt::ReplyKind::Ack) return false;
  txCount = r.txCountGlobal;
  sig = r.sig;
  return true;
}
#else
// Without agent/mqtt: the Ack written here to the same spec.
size_t put_varint(uint64_t v, uint8_t* out) {
  size_t n = 0;
  do {
    uint8_t b = static_cast<uint8_t>(v & 0x7f);
    v >>= 7;
    if (v != 0) b |= 0x80;
    out[n++] = b;
  } while (v != 0);
  return n;
}
size_t encode_ack(uint64_t txCount, const Signature& sig, uint8_t* out) {
  size_t n = 0;
  out[n++] = 1;
  out[n++] = 0x10;
  n += put_varint(txCount, out + n);
  std::memcpy(out + n, sig.r, 32);
  std::memcpy(out + n + 32, sig.s, 32);
  out[n + 64] = sig.v;
  return n + 65;
}
bool decode_ack(const uint8_t* in, size_t len, uint64_t& txCount, Signature& sig) {
  if (len < 3 || in[0] != 1 || in[1] != 0x10) return false;
  size_t i = 2;
  uint64_t v = 0;
  unsigned shift = 0;
  for (;;) {
    if (i >= len || shift > 56) return false;
    const uint8_t b = in[i++];
    v |= static_cast<uint64_t>(b & 0x7f) << shift;
    shift += 7;
    if ((b & 0x80) == 0) break;
  }
  if (len - i != 65) return false;
  std::memcpy(sig.r, in + i, 32);
  std::memcpy(sig.s, in + i + 32, 32);
  sig.v = in[i + 64];
  txCount = v;
  return true;
}
#endif

// ------------------------------------------------------------------ primitives

void BM_keccak256(benchmark::State& st) {
  std::vector<uint8_t> in(static_cast<size_t>(st.range(0)), 0xab);
  uint8_t out[32];
  for (auto _ : st) {
    keccak256(in.data(), in.size(), out);
    benchmark::DoNotOptimize(out);
  }
  st.SetBytesProcessed(static_cast<int64_t>(st.iterations()) * st.range(0));
  st.counters["bytes"] = static_cast<double>(in.size());
}
BENCHMARK(BM_keccak256)->Arg(32)->Arg(64)->Arg(136)->Arg(252)->Arg(628)->Arg(1024)->Arg(4096);

void BM_keccak_f1600(benchmark::State& st) {
  uint64_t s[25] = {1};
  for (auto _ : st) {
    keccak_f1600(s);
    benchmark::DoNotOptimize(s);
  }
}
BENCHMARK(BM_keccak_f1600);

void BM_channel_hash(benchmark::State& st) {
  SignedChannelState s = sample_state();
  for (auto _ : st) {
    Hash32 h = channel_hash(s.state);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_channel_hash);

void BM_thread_hash(benchmark::State& st) {
  ThreadState t = world().thread0;
  for (auto _ : st) {
    Hash32 h = thread_hash(t);
    benchmark::DoNotOptimize(h);
  }
}
BENCHMARK(BM_thread_hash);

void BM_encode_update(benchmark::State& st) {
  SampleUpdate s = sample_update();
  uint8_t buf[kMaxWireMessage];
  size_t n = 0;
  for (auto _ : st) {
    check(encode_channel_update(s.u, buf, sizeof buf, &n), "encode_channel_update");
    benchmark::DoNotOptimize(buf);
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_encode_update);

void BM_decode_update(benchmark::State& st) {
  SampleUpdate s = sample_update();
  uint8_t buf[kMaxWireMessage];
  size_t n = 0;
  check(encode_channel_update(s.u, buf, sizeof buf, &n), "encode_channel_update");
  ChannelUpdate out;
  for (auto _ : st) {
    check(decode_channel_update(buf, n, out), "decode_channel_update");
    benchmark::DoNotOptimize(out);
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_decode_update);

void BM_encode_state(benchmark::State& st) {
  SignedChannelState s = sample_state();
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  for (auto _ : st) {
    check(encode_channel_state(s, buf, sizeof buf, &n), "encode_channel_state");
    benchmark::DoNotOptimize(buf);
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_encode_state);

void BM_decode_state(benchmark::State& st) {
  SignedChannelState s = sample_state();
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  check(encode_channel_state(s, buf, sizeof buf, &n), "encode_channel_state");
  SignedChannelState out;
  for (auto _ : st) {
    check(decode_channel_state(buf, n, out), "decode_channel_state");
    benchmark::DoNotOptimize(out);
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_decode_state);

void BM_sign_eth(benchmark::State& st) {
  World& w = world();
  Hash32 h = channel_hash(w.channel0);
  Signature sig;
  for (auto _ : st) {
    check(w.userSigner.sign_eth(w.userKey, h, sig), "sign_eth");
    benchmark::DoNotOptimize(sig);
    h.bytes[0]++;  // a fresh message each time (RFC 6979 nonce differs)
  }
}
BENCHMARK(BM_sign_eth);

// The public key and address of a private key: one EC point multiplication + keccak.
// (channel_propose no longer calls it per update: programs derive it once at start-up.)
void BM_address_of(benchmark::State& st) {
  World& w = world();
  Address a;
  for (auto _ : st) {
    check(w.userSigner.address_of(w.userKey, a), "address_of");
    benchmark::DoNotOptimize(a);
  }
}
BENCHMARK(BM_address_of);

void BM_recover_eth(benchmark::State& st) {
  World& w = world();
  Hash32 h = channel_hash(w.channel0);
  Signature sig;
  check(w.userSigner.sign_eth(w.userKey, h, sig), "sign_eth");
  Address a;
  for (auto _ : st) {
    check(w.hubSigner.recover_eth(h, sig, a), "recover_eth");
    benchmark::DoNotOptimize(a);
  }
  if (a != w.user) die("recover_eth", Status::WrongSigner);
}
BENCHMARK(BM_recover_eth);

// ------------------------------------------------------------------ the crypto bound

struct BareSecp {
  secp256k1_context* ctx;
  BareSecp() {
    ctx = secp256k1_context_create(SECP256K1_CONTEXT_SIGN | SECP256K1_CONTEXT_VERIFY);
    const uint8_t seed[32] = {9};
    if (!secp256k1_context_randomize(ctx, seed)) std::abort();
  }
  ~BareSecp() { secp256k1_context_destroy(ctx); }
};

void BM_secp_sign(benchmark::State& st) {
  BareSecp b;
  const PrivateKey k = key_of(0x22);
  uint8_t msg[32] = {0x5a};
  secp256k1_ecdsa_recoverable_signature sig;
  for (auto _ : st) {
    if (!secp256k1_ecdsa_sign_recoverable(b.ctx, &sig, msg, k.bytes, nullptr, nullptr)) std::abort();
    benchmark::DoNotOptimize(sig);
    msg[0]++;
  }
}
BENCHMARK(BM_secp_sign);

void BM_secp_recover(benchmark::State& st) {
  BareSecp b;
  const PrivateKey k = key_of(0x22);
  const uint8_t msg[32] = {0x5a};
  secp256k1_ecdsa_recoverable_signature sig;
  if (!secp256k1_ecdsa_sign_recoverable(b.ctx, &sig, msg, k.bytes, nullptr, nullptr)) std::abort();
  uint8_t compact[64];
  int recid = 0;
  secp256k1_ecdsa_recoverable_signature_serialize_compact(b.ctx, compact, &recid, &sig);
  secp256k1_pubkey pub;
  for (auto _ : st) {
    secp256k1_ecdsa_recoverable_signature rs;
    if (!secp256k1_ecdsa_recoverable_signature_parse_compact(b.ctx, &rs, compact, recid)) std::abort();
    if (!secp256k1_ecdsa_recover(b.ctx, &pub, &rs, msg)) std::abort();
    benchmark::DoNotOptimize(pub);
  }
}
BENCHMARK(BM_secp_recover);

// ------------------------------------------------------------------ flows

struct Cycle {
  World& w = world();
  ChannelState userPrev, hubPrev;
  uint8_t wire[kMaxWireMessage];
  uint8_t reply[2 + 9 + 65];
  uint64_t payments = 0;
  Cycle() : userPrev(world().channel0), hubPrev(world().channel0) {}

  // User: build, sign and encode the update. Returns the wire size.
  Hash32 userNextHash;
  size_t user_propose(ChannelState& userNext) {
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = U256::from_u64(1000);
    check(channel_propose(w.ctx, w.userSigner, w.userKey, Party::User, userPrev, w.noThreads, u, userNext,
                          &userNextHash),
          "channel_propose");
    size_t n = 0;
    check(encode_channel_update(u, wire, sizeof wire, &n), "encode_channel_update");
    return n;
  }
  // Hub: decode, validate + recover, countersign, encode the Ack. Returns the Ack size.
  size_t hub_accept(size_t n) {
    ChannelUpdate hu;
    check(decode_channel_update(wire, n, hu), "decode_channel_update");
    ChannelState hubNext;
    Hash32 h;
    check(channel_accept(w.ctx, w.hubSigner, Party::Hub, hubPrev, w.noThreads, hu, hubNext, h), "channel_accept");
    Signature sigHub;
    check(w.hubSigner.sign_eth(w.hubKey, h, sigHub), "sign_eth");
    hubPrev = hubNext;
    return encode_ack(hubNext.txCountGlobal, sigHub, reply);
  }
  // User: decode the Ack and check the countersignature over its own next state.
  void user_check(size_t m, const ChannelState& userNext) {
    uint64_t tx = 0;
    Signature sigHub;
    if (!decode_ack(reply, m, tx, sigHub) || tx != userNext.txCountGlobal) die("decode_ack", Status::BadArgs);
    check(w.userSigner.verify_eth(userNextHash, sigHub, w.hub), "verify_eth");
    userPrev = userNext;
    ++payments;
  }
};

void BM_payment_cycle(benchmark::State& st) {
  Cycle c;
  size_t n = 0;
  for (auto _ : st) {
    ChannelState userNext;
    n = c.user_propose(userNext);
    const size_t m = c.hub_accept(n);
    c.user_check(m, userNext);
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_payment_cycle);

void BM_payment_hub_side(benchmark::State& st) {
  // The user's updates are prepared outside the timed region, in batches.
  Cycle c;
  constexpr size_t kBatch = 256;
  std::vector<std::vector<uint8_t>> updates(kBatch);
  size_t i = kBatch;
  for (auto _ : st) {
    if (i == kBatch) {
      st.PauseTiming();
      ChannelState saved = c.userPrev;
      for (auto& up : updates) {
        ChannelState next;
        const size_t n = c.user_propose(next);
        up.assign(c.wire, c.wire + n);
        c.userPrev = next;
      }
      (void)saved;
      i = 0;
      st.ResumeTiming();
    }
    std::memcpy(c.wire, updates[i].data(), updates[i].size());
    const size_t m = c.hub_accept(updates[i].size());
    benchmark::DoNotOptimize(m);
    ++i;
  }
}
BENCHMARK(BM_payment_hub_side);

void BM_thread_payment(benchmark::State& st) {
  World& w = world();
  ThreadState senderPrev = w.thread0, payeePrev = w.thread0;
  uint8_t wire[kMaxThreadStateWire];
  size_t n = 0;
  const U256 amount = U256::from_u64(1000), zero = U256::zero();
  for (auto _ : st) {
    ThreadUpdate u;
    ThreadState next;
    check(thread_propose(w.userSigner, w.userKey, senderPrev, amount, zero, u, next), "thread_propose");
    SignedThreadState pay{};  // the payment on the wire: the whole state (kind 0x06)
    pay.state = next;
    pay.sigA = u.sig;
    pay.hasSigA = true;
    check(encode_thread_payment(pay, wire, sizeof wire, &n), "encode_thread_payment");
    SignedThreadState got;
    check(decode_thread_payment(wire, n, got), "decode_thread_payment");
    check(thread_accept_state(w.payeeSigner, payeePrev, got), "thread_accept_state");
    senderPrev = next;
    payeePrev = got.state;
  }
  st.counters["bytes"] = static_cast<double>(n);
}
BENCHMARK(BM_thread_payment);

// ------------------------------------------------------------------ Connext JSON baseline

std::string amount_dec(const U256& v) {
  char buf[kU256DecimalMax];
  check(u256_to_decimal(v, buf, sizeof buf, nullptr), "u256_to_decimal");
  return buf;
}

// The Connext client's update request for a Payment, field for field.
std::string connext_update_json(const ChannelUpdate& u) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "reason", update_reason_name(u.reason));
  cJSON* a = cJSON_AddObjectToObject(o, "args");
  cJSON_AddStringToObject(a, "recipient", u.payment.recipient == Party::Hub ? "hub" : "user");
  cJSON_AddStringToObject(a, "amountWei", amount_dec(u.payment.amountWei).c_str());
  cJSON_AddStringToObject(a, "amountToken", amount_dec(u.payment.amountToken).c_str());
  cJSON_AddNumberToObject(o, "txCount", static_cast<double>(u.txCountGlobal));
  char sig[kSignatureTextSize];
  signature_to_hex(u.sig, sig);
  cJSON_AddStringToObject(o, "sigUser", sig);
  char* text = cJSON_PrintUnformatted(o);
  std::string out(text);
  cJSON_free(text);
  cJSON_Delete(o);
  return out;
}

bool connext_update_parse(const std::string& text, ChannelUpdate& u) {
  cJSON* o = cJSON_ParseWithLength(text.data(), text.size());
  if (o == nullptr) return false;
  bool ok = false;
  const cJSON* reason = cJSON_GetObjectItemCaseSensitive(o, "reason");
  const cJSON* args = cJSON_GetObjectItemCaseSensitive(o, "args");
  const cJSON* tx = cJSON_GetObjectItemCaseSensitive(o, "txCount");
  const cJSON* sig = cJSON_GetObjectItemCaseSensitive(o, "sigUser");
  if (cJSON_IsString(reason) && cJSON_IsObject(args) && cJSON_IsNumber(tx) && cJSON_IsString(sig)) {
    const cJSON* rc = cJSON_GetObjectItemCaseSensitive(args, "recipient");
    const cJSON* aw = cJSON_GetObjectItemCaseSensitive(args, "amountWei");
    const cJSON* at = cJSON_GetObjectItemCaseSensitive(args, "amountToken");
    u = channel_update_make(UpdateReason::Payment);
    ok = update_reason_parse(reason->valuestring, std::strlen(reason->valuestring), u.reason) == Status::Ok &&
         cJSON_IsString(rc) && cJSON_IsString(aw) && cJSON_IsString(at) &&
         u256_parse_decimal(aw->valuestring, std::strlen(aw->valuestring), u.payment.amountWei) == Status::Ok &&
         u256_parse_decimal(at->valuestring, std::strlen(at->valuestring), u.payment.amountToken) == Status::Ok &&
         signature_parse(sig->valuestring, std::strlen(sig->valuestring), u.sig) == Status::Ok;
    u.payment.recipient = std::strcmp(rc->valuestring, "hub") == 0 ? Party::Hub : Party::User;
    u.txCountGlobal = static_cast<uint64_t>(tx->valuedouble);
  }
  cJSON_Delete(o);
  return ok;
}

void BM_connext_update_json_encode(benchmark::State& st) {
  SampleUpdate s = sample_update();
  std::string text;
  for (auto _ : st) {
    text = connext_update_json(s.u);
    benchmark::DoNotOptimize(text.data());
  }
  st.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_connext_update_json_encode);

void BM_connext_update_json_decode(benchmark::State& st) {
  SampleUpdate s = sample_update();
  const std::string text = connext_update_json(s.u);
  ChannelUpdate u;
  for (auto _ : st) {
    if (!connext_update_parse(text, u)) die("connext_update_parse", Status::BadArgs);
    benchmark::DoNotOptimize(u);
  }
  if (u.sig != s.u.sig || u.txCountGlobal != s.u.txCountGlobal) die("connext_update_parse", Status::BadArgs);
  st.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_connext_update_json_decode);

#ifdef PICOPAY_BENCH_HAVE_JSON
void BM_connext_state_json_encode(benchmark::State& st) {
  SignedChannelState s = sample_state();
  std::string text;
  for (auto _ : st) {
    cJSON* o = json::channel_to_json(s);
    text = json::print(o, false);
    cJSON_Delete(o);
    benchmark::DoNotOptimize(text.data());
  }
  st.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_connext_state_json_encode);

void BM_connext_state_json_decode(benchmark::State& st) {
  SignedChannelState s = sample_state();
  cJSON* o = json::channel_to_json(s);
  const std::string text = json::print(o, false);
  cJSON_Delete(o);
  SignedChannelState out;
  std::string err;
  for (auto _ : st) {
    cJSON* d = json::parse_document(text, err);
    if (d == nullptr || !json::channel_from_json(d, out, err)) {
      std::fprintf(stderr, "channel_from_json: %s\n", err.c_str());
      std::abort();
    }
    cJSON_Delete(d);
    benchmark::DoNotOptimize(out);
  }
  if (out.state != s.state) die("channel_from_json", Status::BadArgs);
  st.counters["bytes"] = static_cast<double>(text.size());
}
BENCHMARK(BM_connext_state_json_decode);
#endif

}  // namespace

BENCHMARK_MAIN();
