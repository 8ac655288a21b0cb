// The paying device: a Cortex-M4 image that pays a real picopay-hub through a real MQTT
// broker (docs/firmware.md "Paying from your firmware", docs/mqtt-protocol.md).
//
// Start-up configuration (device_board.hpp config_value): hub=<0x address>
// contract=<0x address> password=<broker password> deposit=<wei> amount=<wei per payment>
// payments=<count> timeout=<unix seconds: the deposit's timeout> resend_ms=<ms>
// provision=1 (only create the key, print the address, stop).
//
// What it does:
//  1. The key: loaded from the key sectors of the device's flash; on the first boot it is
//     generated from the board's entropy and stored there. It never leaves the device;
//     the device prints only its address (ADDRESS line).
//  2. The channel record (flash sectors 2-3, FlashStateStore): the latest double-signed
//     state, the update in flight (proposed and signed, not yet countersigned) and, while
//     the latest countersignature is not verified yet, the last verified state.
//  3. MQTT 3.1.1 over the UART (port/baremetal mqtt_client.hpp): username = the device's
//     lowercase address, subscribes picopay/v1/user/<addr>/reply, publishes updates on
//     picopay/v1/hub/<hub>/channel/<addr>/update (QoS 1).
//  4. The channel: ProposePendingDeposit(deposit) and ConfirmPending open it (the hub
//     must accept ConfirmPending without a chain: tests run it with
//     --dev-skip-chain-checks), then `payments` Payments of `amount` wei to the hub.
//     Every update is built and signed (channel_propose), persisted, then published; the
//     same bytes are re-sent every resend_ms until the hub's Ack or Nack arrives. After a
//     reboot the update in flight is re-sent from flash, never signed anew with other
//     content: no txCountGlobal is ever signed twice.
//  5. Which countersignatures are verified, and when (lazy verification): a Payment from
//     the device only lowers the device's balance, so the hub's countersignature on it
//     gives the device no claim it needs; the device stores it unverified and keeps the
//     last verified state as its evidence. It verifies a countersignature before relying
//     on a state: an update that raises its claim (deposit, ConfirmPending) is verified
//     at once; the latest state is verified before the device stops (or exits the
//     channel). A state from a Nack or Sync is adopted only with both signatures verified.
// Flash writes: one record per update (written before the update leaves); the Ack of a
// payment is kept in RAM until the next update's record.
// Output (semihosting console): ADDRESS, SIGNED <tx> <update hex> (each signature that
// leaves), ACKED <tx>, FINAL <state hex>, METRIC lines, RESULT <0|error>.
#include <cstring>
#include <initializer_list>

#include "board.hpp"
#include "console.hpp"
#include "device_board.hpp"
#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/hooks.hpp"
#include "picopay/port/baremetal/mqtt_client.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"

using namespace picopay;
namespace bm = picopay::port::baremetal;

namespace {

// Exit statuses (besides 0) of the device image.
enum Exit : int { kExitConfig = 2, kExitFlash = 3, kExitKey = 4, kExitRefused = 5, kExitBadCountersig = 6 };

constexpr uint8_t kRecordVersion = 1;
constexpr uint8_t kFlagPending = 1, kFlagVerified = 2;

// ---- state (static: counted as RAM by the size report) -------------------------------
Signer g_signer;
PrivateKey g_key;
ChannelContext g_ctx;
Address g_user;
char g_user_hex[kAddressTextSize];

SignedChannelState g_latest;   // latest double-signed state (hub signature maybe unverified)
SignedChannelState g_anchor;   // latest state whose hub countersignature is verified
SignedChannelState g_pending;  // proposed and signed by the device, not countersigned yet
bool g_has_pending = false;
bool g_latest_verified = false;
ChannelUpdate g_update;  // scratch of propose / decode
uint8_t g_pending_wire[kMaxChannelUpdateWire];
size_t g_pending_len = 0;
UpdateReason g_pending_reason = UpdateReason::Payment;
ThreadState g_thread_items[1];
Hash32 g_thread_scratch[3];

// One buffer for the flash record and the outgoing MQTT packet (never both at once).
uint8_t g_io[1024];
uint8_t g_rx[800];

char g_topic_update[128];
char g_topic_reply[80];

uint64_t g_deposit = 0, g_amount = 0, g_payments = 0, g_timeout = 0;
uint32_t g_resend_ms = 500;

uint64_t g_insn_pay_sum = 0, g_insn_pay_max = 0, g_insn_measured = 0, g_pay_count = 0;
uint64_t g_insn_current = 0;  // instructions spent so far on the update in flight
bool g_insn_whole = false;     // ... and it was proposed in this boot (measured whole)
uint64_t g_resends = 0, g_reconnects = 0;

ThreadSet threads() { return ThreadSet{g_thread_items, 0, 1, g_thread_scratch}; }

void line(const char* tag, uint64_t n, const uint8_t* data, size_t len) {
  fw::print(tag);
  fw::print(" ");
  fw::print_u64(n);
  if (data != nullptr) {
    fw::print(" ");
    fw::print_hex(data, len);
  }
  fw::print("\n");
}

bool config_u64(const char* key, uint64_t& out) {
  char v[24];
  if (!fw::config_value(key, v, sizeof v) || v[0] == '\0') return false;
  uint64_t r = 0;
  for (const char* p = v; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9' || r > (UINT64_MAX - 9) / 10) return false;
    r = r * 10 + static_cast<uint64_t>(*p - '0');
  }
  out = r;
  return true;
}

bool config_address(const char* key, Address& out) {
  char v[kAddressTextSize + 1];
  return fw::config_value(key, v, sizeof v) && address_parse(v, std::strlen(v), out) == Status::Ok;
}

// ---- flash -----------------------------------------------------------------------------

bm::FlashStateStore* g_key_store = nullptr;
bm::FlashStateStore* g_store = nullptr;

// Loads the key, or creates it on the first boot. Errors: IoError, Corrupt.
Status load_or_create_key() {
  size_t n = 0;
  Status e = g_key_store->load(g_key.bytes, sizeof g_key.bytes, &n);
  if (e == Status::Ok && n == sizeof g_key.bytes) return g_signer.address_of(g_key, g_user);
  if (e != Status::NotFound) return e == Status::Ok ? Status::Corrupt : e;
  // First boot: 32 bytes from the entropy source, hashed with a second draw; a key out of
  // range (probability ~2^-128) is drawn again.
  bm::HookEntropy entropy(fw::entropy, nullptr);
  for (int attempt = 0; attempt < 4; ++attempt) {
    uint8_t seed[64];
    e = entropy.fill(seed, sizeof seed);
    if (e != Status::Ok) return e;
    keccak256(seed, sizeof seed, g_key.bytes);
    secure_wipe(seed, sizeof seed);
    if (g_signer.address_of(g_key, g_user) == Status::Ok) return g_key_store->save(g_key.bytes, sizeof g_key.bytes);
  }
  return Status::BadPrivateKey;
}

struct Writer {
  uint8_t* p;
  size_t cap;
  size_t n = 0;
  Status e = Status::Ok;
  void u8(uint8_t v) {
    if (n >= cap) e = Status::BufferTooSmall;
    else p[n++] = v;
  }
  void blob(const uint8_t* d, size_t len) {
    if (len + 2 > cap - n || len > 0xFFFF) {
      e = Status::BufferTooSmall;
      return;
    }
    p[n++] = static_cast<uint8_t>(len >> 8);
    p[n++] = static_cast<uint8_t>(len);
    std::memcpy(p + n, d, len);
    n += len;
  }
  void state(const SignedChannelState& s) {
    if (e != Status::Ok) return;
    size_t len = 0;
    if (n + 2 > cap) {
      e = Status::BufferTooSmall;
      return;
    }
    e = encode_channel_state(s, p + n + 2, cap - n - 2, &len);
    if (e != Status::Ok) return;
    p[n] = static_cast<uint8_t>(len >> 8);
    p[n + 1] = static_cast<uint8_t>(len);
    n += 2 + len;
  }
};

// Record: version | flags | latest | [pending update] | [anchor if latest unverified].
Status save_record() {
  Writer w{g_io, sizeof g_io};
  w.u8(kRecordVersion);
  w.u8(static_cast<uint8_t>((g_has_pending ? kFlagPending : 0) | (g_latest_verified ? kFlagVerified : 0)));
  w.state(g_latest);
  if (g_has_pending) w.blob(g_pending_wire, g_pending_len);
  if (!g_latest_verified) w.state(g_anchor);
  if (w.e != Status::Ok) return w.e;
  return g_store->save(g_io, w.n);
}

bool take(const uint8_t* rec, size_t len, size_t& pos, const uint8_t** d, size_t* n) {
  if (len - pos < 2) return false;
  *n = (static_cast<size_t>(rec[pos]) << 8) | rec[pos + 1];
  pos += 2;
  if (*n > len - pos) return false;
  *d = rec + pos;
  pos += *n;
  return true;
}

// Errors: NotFound (blank flash), Corrupt (a record this firmware cannot read), the
// store's errors, the decoders' errors.
Status load_record() {
  size_t len = 0;
  Status e = g_store->load(g_io, sizeof g_io, &len);
  if (e != Status::Ok) return e;
  if (len < 2 || g_io[0] != kRecordVersion) return Status::Corrupt;
  const uint8_t flags = g_io[1];
  size_t pos = 2;
  const uint8_t* d = nullptr;
  size_t n = 0;
  if (!take(g_io, len, pos, &d, &n)) return Status::Corrupt;
  e = decode_channel_state(d, n, g_latest);
  if (e != Status::Ok) return e;
  g_has_pending = (flags & kFlagPending) != 0;
  g_latest_verified = (flags & kFlagVerified) != 0;
  if (g_has_pending) {
    if (!take(g_io, len, pos, &d, &n) || n > sizeof g_pending_wire) return Status::Corrupt;
    std::memcpy(g_pending_wire, d, n);
    g_pending_len = n;
  }
  if (g_latest_verified) {
    g_anchor = g_latest;
  } else {
    if (!take(g_io, len, pos, &d, &n)) return Status::Corrupt;
    e = decode_channel_state(d, n, g_anchor);
    if (e != Status::Ok) return e;
  }
  if (g_has_pending) {
    // The state in flight, rebuilt from the latest state and the stored update (pure:
    // nothing is signed again).
    e = decode_channel_update(g_pending_wire, g_pending_len, g_update);
    if (e != Status::Ok) return e;
    g_pending = SignedChannelState{};
    e = channel_next_state(g_ctx, g_latest.state, threads(), g_update, g_pending.state);
    if (e != Status::Ok) return e;
    g_pending.hasSigUser = true;
    g_pending.sigUser = g_update.sig;
    g_pending_reason = g_update.reason;
  }
  return pos == len ? Status::Ok : Status::Corrupt;
}

// ---- the channel -------------------------------------------------------------------------

enum class Next : uint8_t { Proposed, Done, Error };

// Builds, signs and persists the next update (before it leaves the device).
Next propose_next(Status& err) {
  const ChannelState& s = g_latest.state;
  ChannelUpdate& u = g_update;
  if (s.txCountGlobal == 0) {
    u = channel_update_make(UpdateReason::ProposePendingDeposit);
    u.deposit.depositWeiUser = U256::from_u64(g_deposit);
    u.deposit.timeout = g_timeout;
  } else if (!s.pendingDepositWeiUser.is_zero()) {
    u = channel_update_make(UpdateReason::ConfirmPending);
    // The hub reads the chain before it countersigns (tests: --dev-skip-chain-checks).
    std::memset(u.chainTx.transactionHash.bytes, 0xcc, sizeof u.chainTx.transactionHash.bytes);
  } else if (g_pay_count < g_payments) {
    u = channel_update_make(UpdateReason::Payment);
    u.payment.recipient = Party::Hub;
    u.payment.amountWei = U256::from_u64(g_amount);
  } else {
    return Next::Done;
  }
  const uint64_t t0 = fw::instructions();
  g_pending = SignedChannelState{};
  err = channel_propose(g_ctx, g_signer, g_key, Party::User, s, threads(), u, g_pending.state);
  if (err != Status::Ok) return Next::Error;
  g_pending.hasSigUser = true;
  g_pending.sigUser = u.sig;
  g_pending_reason = u.reason;
  err = encode_channel_update(u, g_pending_wire, sizeof g_pending_wire, &g_pending_len);
  if (err != Status::Ok) return Next::Error;
  g_has_pending = true;
  err = save_record();  // persisted before the signature leaves (DESIGN.md §4.1)
  if (err != Status::Ok) return Next::Error;
  g_insn_current = fw::instructions() - t0;
  g_insn_whole = true;
  line("SIGNED", u.txCountGlobal, g_pending_wire, g_pending_len);
  return Next::Proposed;
}

// The countersignature arrived: the state in flight becomes the latest. A verified one
// (an update that raised the device's claim) is persisted at once; an unverified payment
// Ack is kept in RAM and reaches the flash with the next update's record (one flash
// write per payment): after a power cut the record still holds the update in flight,
// which is re-sent, and the hub answers a re-sent update with its stored Ack.
Status commit_pending(const Signature& hub_sig, bool verified) {
  if (!verified && g_latest_verified) g_anchor = g_latest;
  g_latest = g_pending;
  g_latest.hasSigHub = true;
  g_latest.sigHub = hub_sig;
  g_latest_verified = verified;
  if (verified) g_anchor = g_latest;
  g_has_pending = false;
  return verified ? save_record() : Status::Ok;
}

// Adopts a state the hub sent (Nack / Sync) if it is at or after the state in flight and
// carries both valid signatures (the device's own and the hub's).
bool g_syncing = false;  // asked the hub for its latest state (the latest one failed its check)

bool adopt(const SignedChannelState& s) {
  const uint64_t want = g_has_pending ? g_pending.state.txCountGlobal : g_latest.state.txCountGlobal;
  if (s.state.txCountGlobal < want || !s.hasSigUser || !s.hasSigHub) return false;
  if (s.state.user != g_user || s.state.contractAddress != g_latest.state.contractAddress) return false;
  const Hash32 h = channel_hash(s.state);
  if (g_signer.verify_eth(h, s.sigUser, g_user) != Status::Ok) return false;
  if (g_signer.verify_eth(h, s.sigHub, g_ctx.hub) != Status::Ok) return false;
  g_latest = s;
  g_anchor = s;
  g_latest_verified = true;
  g_has_pending = false;
  return true;
}

// Reply: 0x01 | kind | varint txCountGlobal | body (docs/mqtt-protocol.md).
enum class Outcome : uint8_t { Ignored, Settled, Refused };

Outcome on_reply(const uint8_t* p, size_t len, Status& err) {
  if ((!g_has_pending && !g_syncing) || len < 3 || p[0] != kWireVersion) return Outcome::Ignored;
  const uint8_t kind = p[1];
  uint64_t tx = 0;
  size_t pos = 2;
  for (int i = 0;; ++i) {
    if (i >= 9 || pos >= len) return Outcome::Ignored;
    const uint8_t b = p[pos++];
    tx |= static_cast<uint64_t>(b & 0x7F) << (7 * i);
    if (!(b & 0x80)) break;
  }
  const uint64_t want = g_pending.state.txCountGlobal;
  if (kind == 0x10) {  // Ack
    if (!g_has_pending || tx != want || len - pos != 65) return Outcome::Ignored;
    Signature sig;
    std::memcpy(sig.r, p + pos, 32);
    std::memcpy(sig.s, p + pos + 32, 32);
    sig.v = p[pos + 64];
    if ((sig.v != 27 && sig.v != 28) || !signature_s_is_low(sig.s)) return Outcome::Ignored;
    const uint64_t t0 = fw::instructions();
    // A Payment from the device lowers only its own balance: the countersignature is
    // verified later, before the device relies on the state. Anything else now.
    bool verified = false;
    if (g_pending_reason != UpdateReason::Payment) {
      if (g_signer.verify_eth(channel_hash(g_pending.state), sig, g_ctx.hub) != Status::Ok) return Outcome::Ignored;
      verified = true;
    }
    err = commit_pending(sig, verified);
    g_insn_current += fw::instructions() - t0;
    line("ACKED", want, nullptr, 0);
    return Outcome::Settled;
  }
  if (kind == 0x11 || kind == 0x12) {  // Nack (status byte first) or Sync
    uint8_t status = 0;
    if (kind == 0x11) {
      if (pos >= len) return Outcome::Ignored;
      status = p[pos++];
    }
    SignedChannelState s;  // on the stack: this path is rare (RAM is the budget)
    if (decode_channel_state(p + pos, len - pos, s) != Status::Ok) return Outcome::Ignored;
    if (adopt(s)) {
      err = save_record();
      line("ADOPTED", s.state.txCountGlobal, nullptr, 0);
      return Outcome::Settled;
    }
    // The hub refuses the update in flight and holds an older state: the device may not
    // sign another state with this txCountGlobal, so it stops (an operator must look).
    if (g_has_pending && kind == 0x11 && tx == want && s.state.txCountGlobal < want) {
      fw::print("REFUSED ");
      fw::print(status_name(static_cast<Status>(status)));
      fw::print("\n");
      return Outcome::Refused;
    }
  }
  return Outcome::Ignored;
}

// ---- the link ------------------------------------------------------------------------------

bm::MqttClient* g_mqtt = nullptr;
char g_password[64];

void connect_broker() {
  char client_id[8 + kAddressTextSize];
  std::memcpy(client_id, "picopay-", 8);
  std::memcpy(client_id + 8, g_user_hex, kAddressTextSize);
  for (;;) {
    if (g_mqtt->connect(client_id, g_user_hex, g_password, 30, 2000) == Status::Ok &&
        g_mqtt->subscribe(g_topic_reply, 2000) == Status::Ok)
      return;
    ++g_reconnects;
    // Wait a little (the link may be re-opening), draining what arrives.
    const uint32_t t0 = fw::serial().now_ms();
    uint8_t b;
    while (fw::serial().now_ms() - t0 < 300) (void)fw::serial().read(&b);
  }
}

bool topic_is(const bm::MqttMessage& m, const char* t) {
  return m.topic_len == std::strlen(t) && std::memcmp(m.topic, t, m.topic_len) == 0;
}

char g_topic_sync[128];

// Publishes a sync request and waits (a few resend periods) for a Sync or Nack reply
// whose state the device can adopt (adopt(): both signatures verified). True if adopted.
bool sync_with_hub() {
  g_syncing = true;
  bool adopted = false;
  for (int round = 0; round < 4 && !adopted; ++round) {
    if (g_mqtt->publish(g_topic_sync, nullptr, 0, 1) != Status::Ok) connect_broker();
    const uint32_t t0 = fw::serial().now_ms();
    while (!adopted && fw::serial().now_ms() - t0 < g_resend_ms * 2) {
      bm::MqttMessage m;
      bool got = false;
      if (g_mqtt->poll(m, &got) != Status::Ok) {
        connect_broker();
        break;
      }
      Status err = Status::Ok;
      if (got && topic_is(m, g_topic_reply) && on_reply(m.payload, m.payload_len, err) == Outcome::Settled)
        adopted = err == Status::Ok;
    }
  }
  g_syncing = false;
  return adopted;
}

int finish(int status) {
  if (g_insn_measured > 0) {
    fw::metric("instructions_per_payment", g_insn_pay_sum / g_insn_measured);
    fw::metric("instructions_per_payment_max", g_insn_pay_max);
  }
  fw::metric("payments", g_pay_count);
  fw::metric("resends", g_resends);
  fw::metric("reconnects", g_reconnects);
  fw::print("RESULT ");
  fw::print_u64(static_cast<uint64_t>(status));
  fw::print("\n");
  secure_wipe(g_key.bytes, sizeof g_key.bytes);
  return status;
}

}  // namespace

int device_run() noexcept {
  fw::print("picopay device\n");
  Address contract{};
  if (!config_address("hub", g_ctx.hub) || !config_address("contract", contract) ||
      !fw::config_value("password", g_password, sizeof g_password)) {
    fw::print("config: hub=, contract= and password= are required\n");
    if (!fw::config_value("provision", g_password, sizeof g_password)) return finish(kExitConfig);
  }
  (void)config_u64("deposit", g_deposit);
  (void)config_u64("amount", g_amount);
  (void)config_u64("payments", g_payments);
  (void)config_u64("timeout", g_timeout);
  uint64_t resend = 0;
  if (config_u64("resend_ms", resend) && resend > 0 && resend < 60000) g_resend_ms = static_cast<uint32_t>(resend);

  uint8_t seed[32];
  bm::HookEntropy entropy(fw::entropy, nullptr);
  if (entropy.fill(seed, sizeof seed) != Status::Ok || g_signer.init(seed) != Status::Ok) return finish(kExitKey);
  secure_wipe(seed, sizeof seed);

  bm::Flash* flash = fw::device_flash();
  if (flash == nullptr) {
    fw::print("flash: not usable (flash=<host file>)\n");
    return finish(kExitFlash);
  }
  static bm::FlashStateStore key_store(*flash, 0);
  static bm::FlashStateStore store(*flash, 2);
  g_key_store = &key_store;
  g_store = &store;
  if (!key_store.valid() || !store.valid()) return finish(kExitFlash);
  if (load_or_create_key() != Status::Ok) return finish(kExitKey);
  hex_encode(g_user.bytes, sizeof g_user.bytes, g_user_hex, true);
  fw::print("ADDRESS ");
  fw::print(g_user_hex);
  fw::print("\n");
  char flag[4];
  if (fw::config_value("provision", flag, sizeof flag)) return finish(0);

  // Topics (docs/mqtt-protocol.md).
  char hub_hex[kAddressTextSize];
  hex_encode(g_ctx.hub.bytes, sizeof g_ctx.hub.bytes, hub_hex, true);
  char* t = g_topic_update;
  for (const char* part : {"picopay/v1/hub/", static_cast<const char*>(hub_hex), "/channel/",
                           static_cast<const char*>(g_user_hex), "/update"}) {
    const size_t n = std::strlen(part);
    std::memcpy(t, part, n);
    t += n;
  }
  *t = '\0';
  // .../channel/<user>/update -> .../channel/<user>/sync
  const size_t stem = static_cast<size_t>(t - g_topic_update) - std::strlen("/update");
  std::memcpy(g_topic_sync, g_topic_update, stem);
  std::memcpy(g_topic_sync + stem, "/sync", 6);
  t = g_topic_reply;
  for (const char* part : {"picopay/v1/user/", static_cast<const char*>(g_user_hex), "/reply"}) {
    const size_t n = std::strlen(part);
    std::memcpy(t, part, n);
    t += n;
  }
  *t = '\0';

  // The channel record, or the genesis state of a new channel.
  Status e = load_record();
  if (e == Status::NotFound) {
    g_latest = SignedChannelState{};
    g_latest.state = channel_state_zero();
    g_latest.state.contractAddress = contract;
    g_latest.state.user = g_user;
    g_latest.state.recipient = g_user;
    g_anchor = g_latest;
    g_latest_verified = true;
    g_has_pending = false;
  } else if (e != Status::Ok) {
    fw::print("flash: channel record unreadable: ");
    fw::print(status_name(e));
    fw::print("\n");
    return finish(kExitFlash);
  }
  // Payments done so far: the txCountGlobal after the two opening updates.
  g_pay_count = g_latest.state.txCountGlobal > 2 ? g_latest.state.txCountGlobal - 2 : 0;
  line("RESUME", g_latest.state.txCountGlobal, nullptr, 0);

  static bm::MqttClient mqtt(fw::serial(), g_rx, sizeof g_rx, g_io, sizeof g_io);
  g_mqtt = &mqtt;
  connect_broker();

  bool send = true;
  uint32_t sent_at = 0;
  for (;;) {
    if (!g_has_pending) {
      Status err = Status::Ok;
      const Next n = propose_next(err);
      if (n == Next::Done) break;
      if (n == Next::Error) {
        fw::print("propose: ");
        fw::print(status_name(err));
        fw::print("\n");
        return finish(kExitFlash);
      }
      send = true;
    }
    if (send) {
      const uint64_t t0 = fw::instructions();
      if (mqtt.publish(g_topic_update, g_pending_wire, g_pending_len, 1) != Status::Ok) {
        connect_broker();
        continue;
      }
      g_insn_current += fw::instructions() - t0;
      sent_at = fw::serial().now_ms();
      send = false;
    }
    bm::MqttMessage m;
    bool got = false;
    if (mqtt.poll(m, &got) != Status::Ok) {
      ++g_reconnects;
      connect_broker();
      send = true;
      continue;
    }
    if (got && topic_is(m, g_topic_reply)) {
      const UpdateReason reason = g_pending_reason;
      Status err = Status::Ok;
      const uint64_t t0 = fw::instructions();
      const Outcome o = on_reply(m.payload, m.payload_len, err);
      if (o == Outcome::Refused) return finish(kExitRefused);
      if (o == Outcome::Settled) {
        if (err != Status::Ok) return finish(kExitFlash);
        g_insn_current += fw::instructions() - t0;
        if (reason == UpdateReason::Payment && g_insn_whole) {
          ++g_insn_measured;
          g_insn_pay_sum += g_insn_current;
          if (g_insn_current > g_insn_pay_max) g_insn_pay_max = g_insn_current;
        }
        // Counted from the state the device now holds (a resumed or adopted payment too).
        g_pay_count = g_latest.state.txCountGlobal > 2 ? g_latest.state.txCountGlobal - 2 : 0;
        g_insn_current = 0;
        g_insn_whole = false;
      }
      continue;
    }
    if (fw::serial().now_ms() - sent_at >= g_resend_ms) {
      ++g_resends;
      send = true;
      if (mqtt.idle_rx_ms() > 4 * g_resend_ms + 2000) {
        ++g_reconnects;
        connect_broker();
      }
    }
  }

  // Done paying: verify the latest countersignature before relying on the state. If it
  // is wrong (a forged or corrupted Ack), ask the hub for its latest state (Sync) and
  // adopt it only with both signatures valid; if none comes, the evidence stays the last
  // verified state and the device stops with an error.
  for (int attempt = 0; !g_latest_verified; ++attempt) {
    if (g_signer.verify_eth(channel_hash(g_latest.state), g_latest.sigHub, g_ctx.hub) == Status::Ok) {
      g_anchor = g_latest;
      g_latest_verified = true;
      break;
    }
    if (attempt == 0) {
      fw::print("FORGED countersignature on txCountGlobal ");
      fw::print_u64(g_latest.state.txCountGlobal);
      fw::print(": syncing with the hub\n");
    }
    if (attempt >= 10 || !sync_with_hub()) {
      fw::print("FAIL the hub's countersignature on the latest state; the evidence stays at txCountGlobal ");
      fw::print_u64(g_anchor.state.txCountGlobal);
      fw::print("\n");
      return finish(kExitBadCountersig);
    }
  }
  if (save_record() != Status::Ok) return finish(kExitFlash);
  size_t n = 0;
  if (encode_channel_state(g_latest, g_io, sizeof g_io, &n) == Status::Ok) line("FINAL", g_latest.state.txCountGlobal, g_io, n);
  mqtt.disconnect();
  return finish(0);
}
