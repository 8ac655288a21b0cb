// Writes the seed corpora of the fuzz targets: valid messages of every kind, built and
// signed by the core with the fixtures' keys (fixtures.hpp), so each target starts from
// inputs that pass its decoder and, for the state machines, its signature checks.
// Usage: picopay_fuzz_seeds <dir>   (writes <dir>/<target>/<name>; scripts/fuzz --seeds)
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <vector>

#include "fixtures.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/abi.hpp"
#include "picopay/chain/manager.hpp"
#include "picopay/codec.hpp"
#include "picopay/eth_tx.hpp"
#include "picopay/device/state.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/ram_flash.hpp"
#include "picopay/port/posix.hpp"

using namespace picopay;
using namespace picopay_fuzz;
using Bytes = std::vector<uint8_t>;

namespace {

std::string g_root;
int g_count = 0;

void put(const std::string& target, const std::string& name, const Bytes& b) {
  const std::string d = g_root + "/" + target;
  mkdir(g_root.c_str(), 0755);
  mkdir(d.c_str(), 0755);
  FILE* f = std::fopen((d + "/" + name).c_str(), "wb");
  if (!f || std::fwrite(b.data(), 1, b.size(), f) != b.size() || std::fclose(f) != 0) {
    std::fprintf(stderr, "cannot write %s/%s\n", d.c_str(), name.c_str());
    std::exit(1);
  }
  ++g_count;
}
void put(const std::string& target, const std::string& name, const std::string& s) {
  put(target, name, Bytes(s.begin(), s.end()));
}
Bytes prefixed(uint8_t b0, const Bytes& b) {
  Bytes out{b0};
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

// Prints and frees a cJSON tree.
std::string json_text(cJSON* o, bool pretty) {
  std::string t = json::print(o, pretty);
  cJSON_Delete(o);
  return t;
}

void must(Status st, const char* what) {
  if (st != Status::Ok) {
    std::fprintf(stderr, "seed %s: %s\n", what, status_name(st));
    std::exit(1);
  }
}

Bytes wire_update(const ChannelUpdate& u) {
  uint8_t b[kMaxWireMessage];
  size_t n = 0;
  must(encode_channel_update(u, b, sizeof b, &n), "encode update");
  return Bytes(b, b + n);
}
Bytes wire_state(const SignedChannelState& s) {
  uint8_t b[kMaxWireMessage];
  size_t n = 0;
  must(encode_channel_state(s, b, sizeof b, &n), "encode state");
  return Bytes(b, b + n);
}
Bytes wire_thread(const SignedThreadState& s) {
  uint8_t b[kMaxWireMessage];
  size_t n = 0;
  must(encode_thread_state(s, b, sizeof b, &n), "encode thread");
  return Bytes(b, b + n);
}
Bytes wire_thread_update(const ThreadUpdate& u) {
  uint8_t b[kMaxWireMessage];
  size_t n = 0;
  must(encode_thread_update(u, b, sizeof b, &n), "encode thread update");
  return Bytes(b, b + n);
}

SignedThreadState signed_thread(const ThreadState& t) {
  SignedThreadState s{};
  s.state = t;
  s.hasSigA = true;
  must(signer().sign_eth(*key_for(t.sender), thread_hash(t), s.sigA), "sign thread");
  return s;
}

struct Proposed {
  size_t scenario;
  const char* name;
  ChannelUpdate u;
  SignedChannelState next;
};
std::vector<Proposed> g_updates;

// Proposes `u` in scenario `sc` by `who`; keeps it as a seed if the core accepts it.
void propose(size_t sc, const char* name, Party who, ChannelUpdate u) {
  const ChannelScenario c = channel_scenario(sc);
  ThreadSetBuf tb(c.threads);
  ChannelState next{};
  Hash32 h{};
  const PrivateKey& k = who == Party::Hub ? hub_key() : user_key();
  const Status st = channel_propose(ChannelContext{hub_addr()}, signer(), k, who, c.prev, tb.set, u, next, &h);
  if (st != Status::Ok) {
    std::fprintf(stderr, "seed %s (scenario %zu) refused: %s\n", name, sc, status_name(st));
    std::exit(1);
  }
  SignedChannelState s{};
  s.state = next;
  s.hasSigUser = s.hasSigHub = true;
  const PrivateKey& other = who == Party::Hub ? user_key() : hub_key();
  Signature counter{};
  must(signer().sign_eth(other, h, counter), "countersign");
  s.sigUser = who == Party::User ? u.sig : counter;
  s.sigHub = who == Party::Hub ? u.sig : counter;
  g_updates.push_back({sc, name, u, s});
}

void channel_seeds() {
  {
    ChannelUpdate u = channel_update_make(UpdateReason::Payment);
    u.payment = {Party::Hub, amount(1000), amount(0)};
    propose(0, "payment-user-to-hub", Party::User, u);
    u.payment = {Party::User, amount(5000), amount(3)};
    propose(0, "payment-hub-to-user", Party::Hub, u);
    u.payment = {Party::Hub, amount(0), amount(7)};
    propose(0, "payment-token", Party::User, u);  // scenario 1 has operations pending: only ConfirmPending or Invalidation may follow
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::Exchange);
    u.exchange = {Party::User, amount(100), amount(0), amount(2)};
    propose(0, "exchange-wei-for-token", Party::User, u);
    u.exchange = {Party::Hub, amount(0), amount(40), amount(4)};
    propose(0, "exchange-token-for-wei", Party::Hub, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit = {amount(1000), amount(2000), amount(0), amount(5), 1900000000};
    propose(0, "deposit", Party::User, u);
    propose(0, "deposit-by-hub", Party::Hub, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ProposePendingWithdrawal);
    u.withdrawal.recipient = other_addr();
    u.withdrawal.withdrawalWeiUser = amount(12345);
    u.withdrawal.withdrawalTokenHub = amount(9);
    u.withdrawal.timeout = 1900000000;
    propose(0, "withdrawal", Party::User, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::ConfirmPending);
    for (int i = 0; i < 32; ++i) u.chainTx.transactionHash.bytes[i] = static_cast<uint8_t>(i);
    propose(1, "confirm-deposit", Party::Hub, u);
    propose(2, "confirm-withdrawal", Party::User, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::Invalidation);
    u.invalidation = {40, 41};
    propose(1, "invalidate-deposit", Party::User, u);
    propose(2, "invalidate-withdrawal", Party::Hub, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::OpenThread);
    u.thread.thread = signed_thread(thread_initial(user_addr(), other_addr(), 3, 5000, 1));
    propose(0, "open-thread-payer", Party::User, u);
    propose(3, "open-third-thread", Party::User, u);
    u.thread.thread = signed_thread(thread_initial(other_addr(), user_addr(), 10, 4000, 0));
    propose(4, "open-thread-payee", Party::Hub, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::CloseThread);
    ThreadState t = thread_initial(user_addr(), other_addr(), 1, 100000, 50);
    t.balanceWeiSender = amount(60000);
    t.balanceWeiReceiver = amount(40000);
    t.txCount = 4;
    u.thread.thread = signed_thread(t);
    propose(3, "close-thread-payer", Party::User, u);
    ThreadState p = thread_initial(other_addr(), user_addr(), 9, 90000, 30);
    p.balanceWeiSender = amount(10000);
    p.balanceWeiReceiver = amount(80000);
    p.balanceTokenSender = amount(0);
    p.balanceTokenReceiver = amount(30);
    p.txCount = 2;
    u.thread.thread = signed_thread(p);
    propose(4, "close-thread-payee", Party::Hub, u);
    propose(4, "close-thread-payee-by-user", Party::User, u);
  }
  {
    ChannelUpdate u = channel_update_make(UpdateReason::EmptyChannel);
    u.chainTx.transactionHash.bytes[31] = 1;
    propose(0, "empty-channel", Party::Hub, u);
    propose(3, "empty-channel-threads", Party::User, u);
  }
  for (const Proposed& p : g_updates) {
    const std::string name = std::to_string(p.scenario) + "-" + p.name;
    put("channel", name, prefixed(static_cast<uint8_t>(p.scenario), wire_update(p.u)));
    put("wire", "update-" + name, wire_update(p.u));
    put("wire", "state-" + name, wire_state(p.next));
    put("json", "update-" + name + ".json", json_text(json::update_to_json(p.u), true));
    put("json", "state-" + name + ".json", json_text(json::channel_to_json(p.next), true));
  }
  // A genesis state: no signatures.
  SignedChannelState g{};
  g.state = channel_scenario(0).prev;
  g.state.txCountGlobal = 0;
  g.state.balanceWeiHub = g.state.balanceWeiUser = amount(0);
  put("wire", "state-genesis", wire_state(g));
  put("json", "state-genesis.json", json_text(json::channel_to_json(g), false));
}

void thread_seeds() {
  for (size_t sc = 0; sc < kThreadScenarios; ++sc) {
    const ThreadState prev = thread_scenario(sc);
    const struct { const char* name; uint64_t wei, token; } pays[] = {{"wei", 1000, 0}, {"token", 0, 5}, {"both", 77, 3}};
    for (const auto& p : pays) {
      ThreadUpdate u{};
      ThreadState next{};
      must(thread_propose(signer(), *key_for(prev.sender), prev, amount(p.wei), amount(p.token), u, next), "thread propose");
      const std::string name = std::to_string(sc) + "-" + p.name;
      put("thread", name, prefixed(static_cast<uint8_t>(sc), wire_thread_update(u)));
      put("wire", "thread-update-" + name, wire_thread_update(u));
      SignedThreadState s{};
      s.state = next;
      s.hasSigA = true;
      s.sigA = u.sig;
      put("wire", "thread-state-" + name, wire_thread(s));
      put("json", "thread-" + name + ".json", json_text(json::thread_to_json(s), true));
    }
  }
}

void reply_seeds() {
  const Proposed& p = g_updates.front();
  mqtt::Reply r;
  r.kind = mqtt::ReplyKind::Ack;
  r.txCountGlobal = p.u.txCountGlobal;
  r.sig = p.next.sigHub;
  Bytes out;
  must(mqtt::encode_reply(r, out), "ack");
  put("reply", "ack", out);
  r.kind = mqtt::ReplyKind::Nack;
  r.status = Status::BadTxCount;
  r.state = p.next;
  out.clear();
  must(mqtt::encode_reply(r, out), "nack");
  put("reply", "nack", out);
  r.kind = mqtt::ReplyKind::Sync;
  r.txCountGlobal = p.next.state.txCountGlobal;
  out.clear();
  must(mqtt::encode_reply(r, out), "sync");
  put("reply", "sync", out);
  r.kind = mqtt::ReplyKind::Nack;
  r.status = Status::WrongSigner;
  r.txCountGlobal = 0;
  r.state = SignedChannelState{};
  r.state.state = channel_state_zero();
  out.clear();
  must(mqtt::encode_reply(r, out), "nack genesis");
  put("reply", "nack-genesis", out);
}

void relay_seeds() {
  RelayOfferMsg o{};
  o.tx.chainId = 1337;
  o.tx.nonce = 0;
  o.tx.gasPriceWei = U256::from_u64(1000000000ULL);
  o.tx.gasLimit = 300000;
  o.facts.known = true;
  o.facts.txCountGlobal = 3;
  o.facts.txCountChain = 3;
  Bytes b(kRelayOfferSize);
  relay_offer_encode(o, b.data());
  put("relay", "offer", b);
  o.tx.gasPriceWei = U256::from_u64(100000000001ULL);  // one wei over the fuzz target's bound
  relay_offer_encode(o, b.data());
  put("relay", "offer-over-bound", b);
  RelayReceiptMsg r{};
  for (int i = 0; i < 32; ++i) r.txHash.bytes[i] = static_cast<uint8_t>(0xA0 + i);
  r.status = 1;
  r.gasUsed = 218400;
  r.blockNumber = 42;
  Bytes c(kRelayReceiptSize);
  relay_receipt_encode(r, c.data());
  put("relay", "receipt", c);
}

void meter_seeds() {
  put("meter", "tasmota", R"({"Time":"2026-11-21T11:03:39","ENERGY":{"TotalStartTime":"2026-01-01T00:00:00","Total":12.34567,"Yesterday":0.5,"Today":1.25,"Power":230,"Voltage":231,"Current":1.0}})");
  put("meter", "shelly-switch", R"({"id":0,"source":"timer","output":true,"apower":230.5,"voltage":231.2,"aenergy":{"total":1234.567,"by_minute":[1.0,2.0,3.0],"minute_ts":1700000000}})");
  put("meter", "shelly-notify", R"({"src":"shellyplus1pm-a8032ab12345","dst":"x","method":"NotifyStatus","params":{"ts":1700000000.12,"switch:0":{"id":0,"aenergy":{"total":99.5}}}})");
  put("meter", "shelly-notify-noenergy", R"({"method":"NotifyStatus","params":{"switch:0":{"output":false}}})");
  put("meter", "lines", "# meter\nwh 12.5\nkwh 0.0135\nunits 3\n\r\nquit\n");
}

void config_seeds(const std::string& src) {
  for (const char* f : {"agent/hub/hub.example.json", "examples/ev-charger/hub.json", "examples/ev-charger/payee.json",
                        "examples/ev-charger/charger1.json", "examples/ev-charger/smartplug-shelly.json"}) {
    FILE* in = std::fopen((src + "/" + f).c_str(), "rb");
    if (!in) continue;
    Bytes b;
    int c;
    while ((c = std::fgetc(in)) != EOF) b.push_back(static_cast<uint8_t>(c));
    std::fclose(in);
    std::string name = f;
    for (auto& ch : name) if (ch == '/') ch = '_';
    put("config", name, b);
  }
  put("config", "numbers.json", R"({"broker":{"port":1883},"confirmations":2,"batchMax":16,"verifyThreads":1,"minUnitsPerPayment":5,"statusIntervalMs":100,"contract":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390","hub":{"privateKey":"0x11"}})");
}

std::string envelope(const std::string& result) { return R"({"jsonrpc":"2.0","id":1,"result":)" + result + "}"; }

void rpc_seeds() {
  const std::string h = "\"0x" + std::string(64, 'a') + "\"";
  const std::string a = "\"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390\"";
  const std::string log = "{\"address\":" + a + ",\"topics\":[\"0x" + chain::hash_hex(chain::keccak_text(chain::sig::kDidStartExitChannel)).substr(2) +
                          "\"," + h + "],\"data\":\"0x" + std::string(64 * 9, '0') + "\",\"blockNumber\":\"0x10\",\"blockHash\":" + h +
                          ",\"transactionHash\":" + h + ",\"logIndex\":\"0x0\"}";
  const std::pair<int, std::string> cases[] = {
      {0, envelope("\"0x539\"")},
      {1, envelope("\"0x1f\"")},
      {2, envelope("\"0xde0b6b3a7640000\"")},
      {3, envelope("\"0x5\"")},
      {4, envelope("{\"number\":\"0x7\",\"hash\":" + h + ",\"parentHash\":" + h + ",\"timestamp\":\"0x6553f100\",\"baseFeePerGas\":\"0x7\"}")},
      {5, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"Method not found"}})"},
      {6, envelope("\"0x5208\"")},
      {7, envelope("\"0x08c379a0" + std::string(62, '0') + "20" + std::string(62, '0') + "04" + "6e6f706500000000000000000000000000000000000000000000000000000000\"")},
      {7, R"({"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"VM Exception while processing transaction: revert nope","data":"0x"}})"},
      {8, envelope(h)},
      {9, envelope("{\"blockNumber\":\"0x10\",\"blockHash\":" + h + ",\"status\":\"0x1\",\"gasUsed\":\"0x5208\",\"effectiveGasPrice\":\"0x3b9aca00\",\"contractAddress\":null,\"logs\":[" + log + "]}")},
      {9, envelope("null")},
      {10, envelope("[" + log + "]")},
      {11, envelope("\"0x6080604052\"")},
      {12, envelope("\"0x1\"")},
  };
  int i = 0;
  for (const auto& c : cases) {
    Bytes b{static_cast<uint8_t>(c.first)};
    b.insert(b.end(), c.second.begin(), c.second.end());
    put("rpc", "m" + std::to_string(c.first) + "-" + std::to_string(i++), b);
  }
}

void abi_seeds() {
  const char* events[] = {"update", "startexit", "empty", "startexitthread", "challenge", "emptythread", "nuke", "hubwithdraw"};
  for (uint8_t e = 0; e < 8; ++e) {
    Bytes b{e, static_cast<uint8_t>(e >= 3 && e <= 5 ? 2 : 1)};
    Bytes words(32 * 20, 0);
    for (size_t w = 0; w < 20; ++w) words[w * 32 + 31] = static_cast<uint8_t>(w + 1);
    b.insert(b.end(), words.begin(), words.end());
    put("abi", std::string("event-") + events[e], b);
  }
  chain::AbiEncoder enc;
  enc.string("ChannelManager: not enough balance");
  Bytes revert = enc.finish(chain::selector("Error(string)"));
  revert.insert(revert.begin(), {8, 0});
  put("abi", "revert-reason", revert);
  chain::Rlp tx = chain::Rlp::list_of({chain::Rlp::uint(uint64_t{1337}), chain::Rlp::uint(uint64_t{5}),
                                       chain::Rlp::bytes(Bytes(60, 0xab)), chain::Rlp::list_of({})});
  Bytes r = chain::rlp_encode(tx);
  r.insert(r.begin(), {8, 0});
  put("abi", "rlp-tx", r);
}

void store_seeds() {
  device::AgentState s;
  s.user = user_addr();
  s.hub = hub_addr();
  s.contract = contract_addr();
  s.channel = g_updates.front().next;
  s.has_pending = true;
  s.pending = g_updates[1].u;
  s.pending_units = 3;
  s.pending_wei = amount(3000);
  s.meter.has_last = true;
  s.meter.last_mwh = 12345;
  s.units_paid = 12;
  s.wei_paid = amount(12000);
  s.next_thread_id = 4;
  device::ThreadRecord t;
  t.initial = signed_thread(thread_initial(user_addr(), other_addr(), 3, 5000, 1));
  t.latest = t.initial;
  s.threads.push_back(t);
  const std::string text = device::state_to_json(s);
  put("posix_store", "framed-agent-json", prefixed(1, Bytes(text.begin(), text.end())));
  // The same as a whole file, header and CRC written by the store itself.
  Bytes file{'P', 'P', 'S', 'R', 1, 0, 0, 0};
  const uint32_t len = static_cast<uint32_t>(text.size());
  for (int i = 0; i < 4; ++i) file.push_back(static_cast<uint8_t>(len >> (8 * i)));
  file.insert(file.end(), text.begin(), text.end());
  const uint32_t crc = port::crc32_ieee(0, file.data(), file.size());
  for (int i = 0; i < 4; ++i) file.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  put("posix_store", "raw-agent-file", prefixed(0, file));

  // Flash: images after one and after two saves, with each write unit.
  for (uint8_t wu = 0; wu < 5; ++wu) {
    static uint8_t mem[2 * 256];
    port::baremetal::RamFlash flash(mem, 256, 2, size_t{1} << wu);
    port::baremetal::FlashStateStore store(flash, 0);
    const Bytes rec = wire_state(g_updates.front().next);
    must(store.save(rec.data(), rec.size() < store.capacity() ? rec.size() : store.capacity()), "flash save");
    Bytes img{wu, 0xff, 0, 0};
    img.insert(img.end(), mem, mem + sizeof mem);
    put("flash_store", "one-record-wu" + std::to_string(1 << wu), img);
    must(store.save(reinterpret_cast<const uint8_t*>("second"), 6), "flash save 2");
    img.assign({wu, 3, 1, 0});
    img.insert(img.end(), mem, mem + sizeof mem);
    put("flash_store", "two-records-wu" + std::to_string(1 << wu), img);
  }
  put("flash_store", "blank", Bytes{0, 0, 0, 0});
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: picopay_fuzz_seeds <corpus dir> <source dir>\n");
    return 2;
  }
  g_root = argv[1];
  channel_seeds();
  thread_seeds();
  reply_seeds();
  relay_seeds();
  meter_seeds();
  config_seeds(argv[2]);
  rpc_seeds();
  abi_seeds();
  store_seeds();
  std::printf("wrote %d seeds under %s\n", g_count, g_root.c_str());
  return 0;
}
