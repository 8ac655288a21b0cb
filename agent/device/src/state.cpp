#include "picopay/device/state.hpp"

#include <cjson/cJSON.h>

#include <cstring>

#include "picopay/agent/json_state.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/port/posix.hpp"

namespace picopay::device {
namespace {

constexpr const char* kRecord = "agent.json";
constexpr uint64_t kRecordVersion = 2;

std::string to_hex(const uint8_t* p, size_t n) {
  std::string s(2 * n + 1, '\0');
  hex_encode(p, n, &s[0], false);
  s.resize(2 * n);
  return s;
}

bool from_hex(const std::string& s, std::vector<uint8_t>& out) {
  out.assign(s.size() / 2, 0);
  size_t n = 0;
  return hex_decode(s.data(), s.size(), out.data(), out.size(), &n) == Status::Ok;
}

void add_u64(cJSON* o, const char* k, uint64_t v) { cJSON_AddNumberToObject(o, k, static_cast<double>(v)); }

bool get_u64(const cJSON* o, const char* k, uint64_t& v, std::string& err) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsNumber(n) || n->valuedouble < 0 || n->valuedouble > 9007199254740991.0) {
    err = std::string("state: '") + k + "' missing or not a counter";
    return false;
  }
  v = static_cast<uint64_t>(n->valuedouble);
  return true;
}

bool get_amount(const cJSON* o, const char* k, U256& v, std::string& err) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(n) || u256_parse_decimal(n->valuestring, std::strlen(n->valuestring), v) != Status::Ok) {
    err = std::string("state: '") + k + "' missing or not a decimal amount";
    return false;
  }
  return true;
}

bool get_address(const cJSON* o, const char* k, Address& a, std::string& err) {
  const cJSON* n = cJSON_GetObjectItemCaseSensitive(o, k);
  if (!cJSON_IsString(n) || address_parse(n->valuestring, std::strlen(n->valuestring), a) != Status::Ok) {
    err = std::string("state: '") + k + "' missing or not an address";
    return false;
  }
  return true;
}

}  // namespace

std::vector<ThreadState> AgentState::open_thread_initials() const {
  std::vector<ThreadState> v;
  for (const auto& t : threads)
    if (t.open) v.push_back(t.initial.state);
  return v;
}

long AgentState::find_thread(const Address& sender, const Address& receiver, uint64_t id) const {
  for (size_t i = 0; i < threads.size(); ++i) {
    const auto& s = threads[i].initial.state;
    if (s.sender == sender && s.receiver == receiver && s.threadId == id) return static_cast<long>(i);
  }
  return -1;
}

ThreadSetBuf::ThreadSetBuf(const AgentState& s, size_t extra) {
  items = s.open_thread_initials();
  size_t cap = items.size() + extra;
  size_t n = items.size();
  items.resize(cap);
  scratch.resize(cap + 2);
  set = ThreadSet{items.data(), n, cap, scratch.data()};
}

SignedChannelState genesis_channel(const Address& contract, const Address& user) {
  SignedChannelState g{};
  g.state = channel_state_zero();
  g.state.contractAddress = contract;
  g.state.user = user;
  g.state.recipient = user;
  g.hasSigUser = g.hasSigHub = false;
  return g;
}

std::string state_to_json(const AgentState& s, bool pretty) {
  cJSON* o = cJSON_CreateObject();
  add_u64(o, "version", kRecordVersion);
  cJSON_AddStringToObject(o, "user", json::address_text(s.user).c_str());
  cJSON_AddStringToObject(o, "hub", json::address_text(s.hub).c_str());
  cJSON_AddStringToObject(o, "contract", json::address_text(s.contract).c_str());
  cJSON_AddStringToObject(o, "session", to_hex(s.session.data(), s.session.size()).c_str());
  add_u64(o, "pendingUnits", s.pending_units);
  cJSON_AddStringToObject(o, "pendingWei", json::amount_text(s.pending_wei).c_str());
  cJSON_AddBoolToObject(o, "deposited", s.deposited);
  cJSON_AddItemToObject(o, "channel", json::channel_to_json(s.channel));
  if (s.has_pending) {
    uint8_t buf[kMaxChannelUpdateWire];
    size_t n = 0;
    cJSON* p = cJSON_CreateObject();
    if (encode_channel_update(s.pending, buf, sizeof buf, &n) == Status::Ok)
      cJSON_AddStringToObject(p, "update", to_hex(buf, n).c_str());
    cJSON_AddItemToObject(o, "pending", p);
  } else {
    cJSON_AddNullToObject(o, "pending");
  }
  cJSON* m = cJSON_CreateObject();
  cJSON_AddBoolToObject(m, "hasLast", s.meter.has_last);
  add_u64(m, "lastMwh", s.meter.last_mwh);
  add_u64(m, "meteredMwh", s.meter.metered_mwh);
  add_u64(m, "extraUnits", s.meter.extra_units);
  cJSON_AddItemToObject(o, "meter", m);
  add_u64(o, "unitsPaid", s.units_paid);
  cJSON_AddStringToObject(o, "weiPaid", json::amount_text(s.wei_paid).c_str());
  add_u64(o, "nextThreadId", s.next_thread_id);
  cJSON* th = cJSON_CreateArray();
  for (const auto& t : s.threads) {
    cJSON* x = cJSON_CreateObject();
    cJSON_AddStringToObject(x, "role", t.sender ? "sender" : "receiver");
    cJSON_AddBoolToObject(x, "open", t.open);
    cJSON_AddBoolToObject(x, "closing", t.closing);
    if (t.tower_released) cJSON_AddBoolToObject(x, "towerReleased", true);
    cJSON_AddItemToObject(x, "initial", json::thread_to_json(t.initial));
    cJSON_AddItemToObject(x, "latest", json::thread_to_json(t.latest));
    cJSON_AddItemToArray(th, x);
  }
  cJSON_AddItemToObject(o, "threads", th);
  std::string out = json::print(o, pretty);
  cJSON_Delete(o);
  return out;
}

bool state_from_json(const std::string& text, AgentState& out, std::string& err) {
  cJSON* o = json::parse_document(text, err);
  if (!o) return false;
  struct G {
    cJSON* o;
    ~G() { cJSON_Delete(o); }
  } guard{o};
  AgentState s;
  uint64_t version = 0;
  if (!get_u64(o, "version", version, err)) return false;
  if (version != kRecordVersion) {
    err = "state: record version " + std::to_string(version) +
          " was written by an older picopay-agent (before the single-proposer session); settle or exit "
          "that channel with the version that wrote it, or start with a new state dir";
    return false;
  }
  const cJSON* sess = cJSON_GetObjectItemCaseSensitive(o, "session");
  if (!cJSON_IsString(sess) || !from_hex(sess->valuestring, s.session) || s.session.empty()) {
    err = "state: 'session' missing or not hex";
    return false;
  }
  s.deposited = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "deposited"));
  if (!get_u64(o, "pendingUnits", s.pending_units, err) || !get_amount(o, "pendingWei", s.pending_wei, err))
    return false;
  if (!get_address(o, "user", s.user, err) || !get_address(o, "hub", s.hub, err) ||
      !get_address(o, "contract", s.contract, err))
    return false;
  if (!json::channel_from_json(cJSON_GetObjectItemCaseSensitive(o, "channel"), s.channel, err)) {
    err = "state: channel: " + err;
    return false;
  }
  const cJSON* p = cJSON_GetObjectItemCaseSensitive(o, "pending");
  if (cJSON_IsObject(p)) {
    const cJSON* u = cJSON_GetObjectItemCaseSensitive(p, "update");
    std::vector<uint8_t> bytes;
    if (!cJSON_IsString(u) || !from_hex(u->valuestring, bytes) ||
        decode_channel_update(bytes.data(), bytes.size(), s.pending) != Status::Ok) {
      err = "state: pending.update is not a wire ChannelUpdate";
      return false;
    }
    s.has_pending = true;
  }
  const cJSON* m = cJSON_GetObjectItemCaseSensitive(o, "meter");
  if (!cJSON_IsObject(m)) {
    err = "state: meter missing";
    return false;
  }
  s.meter.has_last = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(m, "hasLast"));
  if (!get_u64(m, "lastMwh", s.meter.last_mwh, err) || !get_u64(m, "meteredMwh", s.meter.metered_mwh, err) ||
      !get_u64(m, "extraUnits", s.meter.extra_units, err))
    return false;
  if (!get_u64(o, "unitsPaid", s.units_paid, err) || !get_amount(o, "weiPaid", s.wei_paid, err) ||
      !get_u64(o, "nextThreadId", s.next_thread_id, err))
    return false;
  const cJSON* th = cJSON_GetObjectItemCaseSensitive(o, "threads");
  if (!cJSON_IsArray(th)) {
    err = "state: threads missing";
    return false;
  }
  for (const cJSON* x = th->child; x; x = x->next) {
    ThreadRecord t;
    const cJSON* role = cJSON_GetObjectItemCaseSensitive(x, "role");
    t.sender = cJSON_IsString(role) && std::strcmp(role->valuestring, "sender") == 0;
    t.open = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "open"));
    t.closing = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "closing"));
    t.tower_released = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(x, "towerReleased"));  // absent: false
    if (!json::thread_from_json(cJSON_GetObjectItemCaseSensitive(x, "initial"), t.initial, err) ||
        !json::thread_from_json(cJSON_GetObjectItemCaseSensitive(x, "latest"), t.latest, err)) {
      err = "state: thread: " + err;
      return false;
    }
    s.threads.push_back(t);
  }
  out = std::move(s);
  return true;
}

bool state_load(const std::string& dir, AgentState& out, std::string& err, bool* missing) {
  if (missing) *missing = false;
  port::PosixStateStore store(dir.c_str(), kRecord);
  std::vector<uint8_t> buf(64 * 1024);
  size_t len = 0;
  Status st = store.load(buf.data(), buf.size(), &len);
  if (st == Status::BufferTooSmall) {
    buf.resize(len);
    st = store.load(buf.data(), buf.size(), &len);
  }
  if (st == Status::NotFound) {
    if (missing) *missing = true;
    err = "no state in " + dir;
    return false;
  }
  if (st != Status::Ok) {
    err = std::string("cannot load state from ") + dir + ": " + status_message(st);
    return false;
  }
  return state_from_json(std::string(reinterpret_cast<const char*>(buf.data()), len), out, err);
}

bool state_save(const std::string& dir, const AgentState& s, std::string& err) {
  port::PosixStateStore store(dir.c_str(), kRecord);
  std::string text = state_to_json(s);
  Status st = store.save(reinterpret_cast<const uint8_t*>(text.data()), text.size());
  if (st != Status::Ok) {
    // The system's reason when a system call failed (ENOSPC: "No space left on device").
    const int e = store.last_errno();
    err = std::string("cannot persist state: ") + (e != 0 ? std::strerror(e) : status_message(st)) + " (" + dir +
          "; the previous state is kept)";
    return false;
  }
  return true;
}

std::string status_json(const AgentState& s) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddStringToObject(o, "user", json::address_text(s.user).c_str());
  cJSON_AddStringToObject(o, "hub", json::address_text(s.hub).c_str());
  cJSON_AddStringToObject(o, "contract", json::address_text(s.contract).c_str());
  if (s.channel.hasSigUser && s.channel.hasSigHub)
    cJSON_AddItemToObject(o, "channel", json::channel_to_json(s.channel));
  else
    cJSON_AddNullToObject(o, "channel");
  if (s.has_pending)
    cJSON_AddItemToObject(o, "pending", json::update_to_json(s.pending));
  else
    cJSON_AddNullToObject(o, "pending");
  cJSON* th = cJSON_CreateArray();
  U256 received = U256::zero();
  for (const auto& t : s.threads) {
    cJSON* x = json::thread_to_json(t.latest);
    cJSON_AddStringToObject(x, "role", t.sender ? "sender" : "receiver");
    cJSON_AddBoolToObject(x, "open", t.open);
    cJSON_AddItemToArray(th, x);
    if (!t.sender) (void)u256_add(received, t.latest.state.balanceWeiReceiver, received);
  }
  cJSON_AddItemToObject(o, "threads", th);
  add_u64(o, "unitsPaid", s.units_paid);
  cJSON_AddStringToObject(o, "weiPaid", json::amount_text(s.wei_paid).c_str());
  add_u64(o, "meteredWh", s.meter.units());
  cJSON_AddStringToObject(o, "receivedWei", json::amount_text(received).c_str());
  std::string out = json::print(o, true);
  cJSON_Delete(o);
  return out;
}

}  // namespace picopay::device
