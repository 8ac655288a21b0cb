// The paying device: a Cortex-M4 image that pays a real picopay-hub through a real MQTT
// broker with the core's device session (picopay::Session, docs/device-session.md);
// docs/firmware.md "Paying from your firmware".
//
// Start-up configuration (device_board.hpp config_value): hub=<0x address>
// contract=<0x address> password=<broker password> now=<Unix seconds at boot>
// deposit=<wei> amount=<wei per payment> payments=<count> timeout=<Unix seconds: the
// deposit's timeout> chain_tx_count_chain=<n> (chain facts read by a gateway: the
// channel's txCount[1] on chain; enables ConfirmPending) provision=1 (only create the key,
// print the address, stop). With a chain relay (docs/firmware.md "Opening the channel on
// chain"): gateway=1 chain_id=<n> max_gas_price=<wei per gas> max_fee=<wei>
// max_deposit_txs=<n, default 3>; linger=<seconds>: after the last payment, keep answering
// the hub's requests until nothing changed for this long; until=<Unix seconds>: pay until
// then (or `payments`, whichever comes first); pay_seconds=<s>: pay for s seconds from the
// first payment of this boot.
//
// The image is the session's transport and port, nothing else:
//  1. The key: loaded from the key sectors of the device's flash; on the first boot it is
//     generated from the board's entropy and stored there. It never leaves the device;
//     the device prints only its address (ADDRESS line).
//  2. The session record (Session::serialise) lives in flash sectors 2-3
//     (FlashStateStore: a power cut leaves the old or the new record). The session says
//     when to persist (Effects::persist); the image stores the record before any of the
//     session's messages leave. A record that changed with nothing to send (the Ack of a
//     payment) is written with the next message's record: one flash write per payment.
//  3. Routes -> topics (docs/mqtt-protocol.md) over MQTT 3.1.1 on the UART
//     (port/baremetal mqtt_client.hpp): username = the device's lowercase address;
//     subscribes picopay/v1/user/<addr>/reply; ToHubUpdate -> .../channel/<addr>/update,
//     ToHubSync -> .../sync, ToHubReply -> .../reply. On every (re)connect
//     Session::on_connect (a sync: the session signs nothing until the hub's state is
//     known).
//  4. What it pays: ProposePendingDeposit(deposit) (Session::request_deposit), then
//     ConfirmPending once the chain facts show the deposit executed
//     (Session::propose_confirm_pending), then `payments` Payments of `amount` wei. The
//     chain facts come from the configuration (chain_tx_count_chain=, with a hub run with
//     --dev-skip-chain-checks) or from a chain relay (gateway=1): the device signs its own
//     deposit transaction (core eth_tx.hpp: userAuthorizedUpdate with the hub-countersigned
//     state, legacy EIP-155) with the relay's nonce / gas price / chain id inside its own
//     bounds, publishes the raw bytes on picopay/v1/user/<addr>/chain/up, and confirms
//     once the relay's chain facts show it executed (the hub checks the chain itself).
//  4b. The hub's requests (picopay/v1/user/<addr>/request): Session::on_hub_request
//     proposes what the signing policy accepts (e.g. the hub's collateral deposit and
//     its ConfirmPending, with the relay's chain facts) and answers the rest with a
//     RequestNack, so a hub that asks something never stalls the device.
//  5. Countersignatures: SessionConfig::verifyCountersigOnPayment = false (a Payment to
//     the hub lowers only the device's balance; the session verifies lazily, before it
//     relies on the state); Session::verify_evidence() before the device stops.
// Output (semihosting console): ADDRESS, SIGNED <tx> <update hex> (each signature that
// leaves the device), ACKED <tx>, REQUEST <session status number>, DEPOSIT_TX <nonce> <raw tx hex>,
// TX_REFUSED <why>, RECEIPT <status> <tx hash hex>, FINAL <state hex>, METRIC lines, RESULT <status>.
#include <cstring>
#include <initializer_list>

#include "board.hpp"
#include "console.hpp"
#include "device_board.hpp"
#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/eth_tx.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/hooks.hpp"
#include "picopay/port/baremetal/mqtt_client.hpp"
#include "picopay/session.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"

using namespace picopay;
namespace bm = picopay::port::baremetal;

namespace {

// Exit statuses (besides 0) of the device image.
enum Exit : int {
  kExitConfig = 2,
  kExitFlash = 3,
  kExitKey = 4,
  kExitHalted = 5,
  kExitBadCountersig = 6,
  kExitRefused = 7,
};

constexpr size_t kThreads = 1;  // this device opens no threads; the session needs one slot

// ---- state (static: counted as RAM by the size report) -------------------------------
Signer g_signer;
PrivateKey g_key;
Address g_user;
char g_user_hex[kAddressTextSize];

Session g_session;
SessionThread g_threads[kThreads];
ThreadState g_set_items[kThreads];
Hash32 g_set_scratch[kThreads + 2];
// The session's Effects (1.5 KB, two messages) lives on device_run's stack: it is filled
// and carried out at once.
Effects* g_fx = nullptr;

// The session record; also the MQTT client's transmit buffer (never both at once: the
// record is stored before the message is built). session_record_max(1) (2,636 B) bounds
// a record holding a hub request and a thread; this device opens no thread and accepts
// none, so its record is at most the channel state, the pending update, a hub request
// and the fixed fields (2,080 B with largest-possible ones). Were it ever larger,
// serialise() reports BufferTooSmall and the device stops (exit 3), nothing half-written.
constexpr size_t kRecordCap = 2080;
static_assert(kRecordCap >= session_record_max(kThreads) - kThreads * (2 * (2 + kMaxThreadStateWire)),
              "the record buffer holds every record without a thread");
static_assert(kRecordCap >= 1 + kMaxUserAuthorizedUpdateTx + 2 + 16 + 42 + 9 + 5,
              "the MQTT transmit buffer holds the deposit transaction and its topic");
static_assert(kRecordCap >= kSessionMaxMessage + 2 + 16 + 42 + 9 + 42 + 8 + 5,
              "the MQTT transmit buffer holds the largest message and its topic");
uint8_t g_io[kRecordCap];
uint8_t g_rx[kMaxReplyWire + 96];

char g_hub_hex[kAddressTextSize];
char g_topic_reply[80];  // picopay/v1/user/<user>/reply (subscribed, compared on every message)
char g_password[64];

uint64_t g_deposit = 0, g_amount = 0, g_payments = 0, g_timeout = 0, g_boot_unix = 0;
uint32_t g_boot_ms = 0;
bool g_dirty = false;  // the session changed what its record holds since the last store
bool g_refused = false;       // the session refused the next step (next_step)
bool g_flash_failed = false;  // storing the record failed (next_step)

// The chain relay (gateway=1).
bool g_gateway = false;
EthTxBounds g_bounds{};           // chain_id=, max_gas_price=, max_fee=
uint64_t g_max_deposit_txs = 3;   // distinct deposit transactions signed per boot, at most
uint64_t g_deposit_txs = 0;
bool g_has_last_tx = false;       // the last deposit transaction signed (its offer, its hash)
EthTxParams g_last_tx{};
Hash32 g_deposit_tx_hash{};
ChainFacts g_facts{};             // the latest chain facts (configuration or relay)
uint32_t g_last_ask_ms = 0;
uint64_t g_linger_s = 0;
uint64_t g_until = 0;             // until=: no new payment from this Unix second on
uint64_t g_pay_seconds = 0;       // pay_seconds=: until = the first payment + this
uint32_t g_last_change_ms = 0;    // the channel state or a hub request changed

uint64_t g_insn_pay_sum = 0, g_insn_pay_max = 0, g_insn_measured = 0;
uint64_t g_insn_current = 0;  // instructions spent on the payment in flight
bool g_insn_whole = false;    // ... proposed in this boot (measured whole)
uint64_t g_reconnects = 0, g_sends = 0;
uint32_t g_pay_first_ms = 0, g_pay_last_ms = 0;  // first payment proposed, last one Acked (host clock)
uint64_t g_pays_timed = 0;

bm::FlashStateStore* g_key_store = nullptr;
bm::FlashStateStore* g_store = nullptr;
bm::MqttClient* g_mqtt = nullptr;

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

// Payments made so far: only payments lower the device's balance (it opens no thread and
// withdraws nothing), so (deposit - balance) / amount, whatever else the hub asked for.
uint64_t payments_done() {
  const ChannelState& s = g_session.channel().state;
  if (g_amount == 0 || !s.pendingDepositWeiUser.is_zero() || !s.balanceWeiUser.fits_u64() ||
      s.balanceWeiUser.low64() > g_deposit)
    return 0;
  return (g_deposit - s.balanceWeiUser.low64()) / g_amount;
}

// Unix seconds: the time given at boot plus the board's clock since.
uint64_t now_unix() { return g_boot_unix + (fw::serial().now_ms() - g_boot_ms) / 1000u; }

void build_topic(char* out, std::initializer_list<const char*> parts) {
  for (const char* part : parts) {
    const size_t n = std::strlen(part);
    std::memcpy(out, part, n);
    out += n;
  }
  *out = '\0';
}

// picopay/v1/user/<user>/<leaf> into out (80 bytes).
void user_topic(char* out, const char* leaf) { build_topic(out, {"picopay/v1/user/", g_user_hex, "/", leaf}); }

// ---- flash -----------------------------------------------------------------------------

// Loads the key, or creates it on the first boot. Errors: IoError, Corrupt, BadPrivateKey.
Status load_or_create_key() {
  size_t n = 0;
  Status e = g_key_store->load(g_key.bytes, sizeof g_key.bytes, &n);
  if (e == Status::Ok && n == sizeof g_key.bytes) return g_signer.address_of(g_key, g_user);
  if (e != Status::NotFound) return e == Status::Ok ? Status::Corrupt : e;
  // First boot: 64 bytes from the entropy source, hashed; a key out of range
  // (probability ~2^-128) is drawn again.
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

Status store_record() {
  size_t n = 0;
  Status e = g_session.serialise(g_io, sizeof g_io, &n);
  if (e == Status::Ok) e = g_store->save(g_io, n);
  if (e == Status::Ok) g_dirty = false;
  return e;
}

// ---- the link ------------------------------------------------------------------------------

bool topic_is(const bm::MqttMessage& m, const char* t) {
  return m.topic_len == std::strlen(t) && std::memcmp(m.topic, t, m.topic_len) == 0;
}
bool user_topic_is(const bm::MqttMessage& m, const char* leaf) {
  char t[80];
  user_topic(t, leaf);
  return topic_is(m, t);
}

// Carries out the session's effects: the record first (if anything will leave), then the
// messages. Returns false if the record could not be stored (nothing was sent).
bool carry_out(const Effects& fx) {
  if (fx.persist) g_dirty = true;
  if (fx.count > 0 && g_dirty) {
    const uint64_t t0 = fw::instructions();
    if (store_record() != Status::Ok) return false;
    g_insn_current += fw::instructions() - t0;
  }
  for (size_t i = 0; i < fx.count; ++i) {
    const OutMessage& m = fx.out[i];
    const char* leaf = m.route == Route::ToHubUpdate ? "/update"
                       : m.route == Route::ToHubSync ? "/sync"
                       : m.route == Route::ToHubReply ? "/reply"
                                                      : nullptr;
    if (leaf == nullptr) continue;  // thread routes: this device opens no threads
    // Route -> topic (docs/mqtt-protocol.md): picopay/v1/hub/<hub>/channel/<user>/<leaf>.
    char topic[16 + 42 + 9 + 42 + 8];
    build_topic(topic, {"picopay/v1/hub/", g_hub_hex, "/channel/", g_user_hex, leaf});
    if (m.route == Route::ToHubUpdate) line("SIGNED", m.correlation, m.bytes, m.len);
    const uint64_t t0 = fw::instructions();
    (void)g_mqtt->publish(topic, m.bytes, m.len, 1);  // a lost message is re-sent by tick()
    g_insn_current += fw::instructions() - t0;
    ++g_sends;
  }
  return true;
}

void connect_broker() {
  char client_id[8 + kAddressTextSize];
  std::memcpy(client_id, "picopay-", 8);
  std::memcpy(client_id + 8, g_user_hex, kAddressTextSize);
  for (;;) {
    char request[80], down[80];
    user_topic(request, "request");
    user_topic(down, "chain/down");
    if (g_mqtt->connect(client_id, g_user_hex, g_password, 30, 2000) == Status::Ok &&
        g_mqtt->subscribe(g_topic_reply, 2000) == Status::Ok && g_mqtt->subscribe(request, 2000) == Status::Ok &&
        (!g_gateway || g_mqtt->subscribe(down, 2000) == Status::Ok)) {
      (void)g_session.on_connect(now_unix(), *g_fx);
      (void)carry_out(*g_fx);
      return;
    }
    ++g_reconnects;
    // Wait a little (the link may be re-opening), draining what arrives.
    const uint32_t t0 = fw::serial().now_ms();
    uint8_t b;
    while (fw::serial().now_ms() - t0 < 300) (void)fw::serial().read(&b);
  }
}

int finish(int status) {
  if (g_insn_measured > 0) {
    fw::metric("instructions_per_payment", g_insn_pay_sum / g_insn_measured);
    fw::metric("instructions_per_payment_max", g_insn_pay_max);
  }
  fw::metric("payments", payments_done());
  fw::metric("messages_sent", g_sends);
  if (g_pays_timed > 0 && g_pay_last_ms > g_pay_first_ms)  // from the first payment to the last Ack
    fw::metric("payments_per_second_x100", g_pays_timed * 100000u / (g_pay_last_ms - g_pay_first_ms));
  fw::metric("reconnects", g_reconnects);
  fw::metric("sizeof_session", sizeof(Session));
  fw::metric("stack_device", fw::stack_used());
  fw::print("RESULT ");
  fw::print_u64(static_cast<uint64_t>(status));
  fw::print("\n");
  secure_wipe(g_key.bytes, sizeof g_key.bytes);
  return status;
}

// ---- the chain relay (gateway=1) ----------------------------------------------------------

// Asks the relay for chain facts and transaction parameters (at most every 2 s).
void ask_relay() {
  const uint32_t now_ms = fw::serial().now_ms();
  if (!g_gateway || (g_last_ask_ms != 0 && now_ms - g_last_ask_ms < 2000)) return;
  g_last_ask_ms = now_ms;
  char up[80];
  user_topic(up, "chain/up");
  const uint8_t ask = kRelayAsk;
  (void)g_mqtt->publish(up, &ask, 1, 1);
}

// The user's deposit of the latest double-signed state is not on chain yet.
bool deposit_waits_for_chain() {
  const ChannelState& s = g_session.channel().state;
  return !s.pendingDepositWeiUser.is_zero() && (!g_facts.known || g_facts.txCountChain < s.txCountChain);
}

// An offer from the relay: its chain facts go to the session (a hub request waiting for
// them may be proposed now); if our own deposit is not on chain yet, the device signs
// its deposit transaction with the offer's parameters, within its own bounds.
// Returns false if the record could not be stored (nothing was sent).
bool on_relay_offer(const RelayOfferMsg& o) {
  g_facts = o.facts;
  (void)g_session.on_chain_fact(o.facts, now_unix(), *g_fx);
  if (!carry_out(*g_fx)) return false;
  if (!deposit_waits_for_chain() || !g_session.synced() || g_session.has_pending()) return true;
  const bool same = g_has_last_tx && o.tx.chainId == g_last_tx.chainId && o.tx.nonce == g_last_tx.nonce &&
                    o.tx.gasPriceWei == g_last_tx.gasPriceWei && o.tx.gasLimit == g_last_tx.gasLimit;
  if (!same && g_deposit_txs >= g_max_deposit_txs) {
    fw::print("TX_REFUSED max_deposit_txs reached\n");
    return true;
  }
  uint8_t raw[1 + kMaxUserAuthorizedUpdateTx];
  raw[0] = kRelayTx;
  size_t n = 0;
  Hash32 h{};
  const Status e = sign_user_deposit_tx(g_signer, g_key, g_session.channel(), o.tx, g_bounds, raw + 1,
                                        sizeof raw - 1, &n, &h);
  if (e != Status::Ok) {
    fw::print("TX_REFUSED ");
    fw::print(status_name(e));
    fw::print("\n");
    return true;
  }
  if (!same) ++g_deposit_txs;  // the same offer signs the same bytes again (RFC 6979): no new transaction
  g_has_last_tx = true;
  g_last_tx = o.tx;
  g_deposit_tx_hash = h;
  line("DEPOSIT_TX", o.tx.nonce, raw + 1, n);
  char up[80];
  user_topic(up, "chain/up");
  (void)g_mqtt->publish(up, raw, n + 1, 1);
  return true;
}

// Returns false if the record could not be stored.
bool on_relay_message(const uint8_t* p, size_t len) {
  RelayOfferMsg o{};
  RelayReceiptMsg r{};
  if (relay_offer_decode(p, len, o) == Status::Ok) {
    return on_relay_offer(o);
  } else if (relay_receipt_decode(p, len, r) == Status::Ok) {
    // Information only: the device relies on the chain facts (and the hub checks the chain).
    line("RECEIPT", r.status, r.txHash.bytes, sizeof r.txHash.bytes);
    g_last_ask_ms = 0;  // ask for the facts at once
    ask_relay();
  }
  return true;
}

enum class Step : uint8_t { Proposed, Waiting, Done };

// What the device does next once the session is free (synced, nothing in flight):
// open the channel, then pay. Done when there is nothing left to do.
Step next_step(uint64_t payments_done) {
  const ChannelState& s = g_session.channel().state;
  const uint64_t now = now_unix();
  const uint64_t t0 = fw::instructions();
  Status e;
  bool payment = false;
  if (s.txCountGlobal == 0) {
    e = g_session.request_deposit(U256::from_u64(g_deposit), U256::zero(), g_timeout, now, *g_fx);
  } else if (!s.pendingDepositWeiUser.is_zero()) {
    if (g_gateway && deposit_waits_for_chain()) {
      ask_relay();  // the offer signs the deposit transaction; later offers show it executed
      return Step::Waiting;
    }
    Hash32 tx_hash;  // the deposit transaction (the relay's, or a gateway's outside the device)
    if (g_has_last_tx) tx_hash = g_deposit_tx_hash;
    else std::memset(tx_hash.bytes, 0xcc, sizeof tx_hash.bytes);
    e = g_session.propose_confirm_pending(tx_hash, now, *g_fx);
  } else if (payments_done < g_payments && (g_until == 0 || now < g_until)) {
    if (g_until == 0 && g_pay_seconds != 0) g_until = now + g_pay_seconds;
    e = g_session.propose_payment(U256::from_u64(g_amount), U256::zero(), now, *g_fx);
    payment = true;
  } else {
    return Step::Done;
  }
  if (e != Status::Ok) {
    // E.g. Underflow (the balance does not cover the payment), NeedsChain (no chain
    // facts for ConfirmPending): the device cannot go on by itself.
    fw::print("propose refused: ");
    fw::print(status_name(e));
    fw::print("\n");
    g_refused = true;
    return Step::Done;
  }
  g_insn_current = fw::instructions() - t0;
  g_insn_whole = payment;
  if (payment && g_pays_timed == 0 && g_pay_first_ms == 0) g_pay_first_ms = fw::serial().now_ms();
  if (!carry_out(*g_fx)) {  // the record could not be stored: nothing left the device
    g_flash_failed = true;
    return Step::Done;
  }
  return Step::Proposed;
}

}  // namespace

int device_run() noexcept {
  fw::stack_paint();
  fw::print("picopay device\n");
  SessionConfig cfg = session_config_default();
  char flag[4];
  const bool provision = fw::config_value("provision", flag, sizeof flag);
  if (!provision && (!config_address("hub", cfg.hub) || !config_address("contract", cfg.contract) ||
                     !fw::config_value("password", g_password, sizeof g_password) ||
                     !config_u64("now", g_boot_unix))) {
    fw::print("config: hub=, contract=, password= and now= are required\n");
    return finish(kExitConfig);
  }
  (void)config_u64("deposit", g_deposit);
  (void)config_u64("amount", g_amount);
  (void)config_u64("payments", g_payments);
  (void)config_u64("timeout", g_timeout);
  ChainFacts facts{};
  uint64_t tx_count_chain = 0;
  if (config_u64("chain_tx_count_chain", tx_count_chain)) {
    facts.known = true;
    facts.txCountChain = tx_count_chain;
    facts.status = ChainChannelStatus::Open;
    facts.blockTime = g_boot_unix;
    cfg.hasChainAccess = true;
  }
  char gw[4];
  if (fw::config_value("gateway", gw, sizeof gw) && gw[0] == '1') {
    // Chain facts and the deposit transaction through a relay: the bounds are required.
    uint64_t max_gas_price = 0, max_fee = 0;
    if (!config_u64("chain_id", g_bounds.chainId) || !config_u64("max_gas_price", max_gas_price) ||
        !config_u64("max_fee", max_fee)) {
      fw::print("config: gateway=1 needs chain_id=, max_gas_price= and max_fee=\n");
      return finish(kExitConfig);
    }
    g_bounds.maxGasPriceWei = U256::from_u64(max_gas_price);
    g_bounds.maxFeeWei = U256::from_u64(max_fee);
    (void)config_u64("max_deposit_txs", g_max_deposit_txs);
    g_gateway = true;
    cfg.hasChainAccess = true;
  }
  (void)config_u64("linger", g_linger_s);
  (void)config_u64("until", g_until);
  (void)config_u64("pay_seconds", g_pay_seconds);
  cfg.verifyCountersigOnPayment = false;  // lazy: docs/device-session.md
  cfg.resendSeconds = 1;
  g_boot_ms = fw::serial().now_ms();

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
  if (provision) return finish(0);

  // Topics (docs/mqtt-protocol.md).
  hex_encode(cfg.hub.bytes, sizeof cfg.hub.bytes, g_hub_hex, true);
  build_topic(g_topic_reply, {"picopay/v1/user/", g_user_hex, "/reply"});

  // The session, from its record (or a new channel).
  cfg.user = g_user;
  Effects fx;
  g_fx = &fx;
  const SessionStorage storage{g_threads, kThreads, g_set_items, g_set_scratch};
  Status e = g_session.init(cfg, g_signer, g_key, storage);
  if (e != Status::Ok) return finish(kExitConfig);
  size_t n = 0;
  e = store.load(g_io, sizeof g_io, &n);
  if (e == Status::Ok) e = g_session.restore(g_io, n);
  if (e != Status::Ok && e != Status::NotFound) {
    fw::print("flash: session record unreadable: ");
    fw::print(status_name(e));
    fw::print("\n");
    return finish(kExitFlash);
  }
  line("RESUME", g_session.channel().state.txCountGlobal, nullptr, 0);
  if (facts.known) (void)g_session.on_chain_fact(facts, now_unix(), *g_fx);  // nothing to send yet
  g_facts = facts;

  static bm::MqttClient mqtt(fw::serial(), g_rx, sizeof g_rx, g_io, sizeof g_io);
  g_mqtt = &mqtt;
  connect_broker();

  uint32_t last_tick = fw::serial().now_ms();
  g_last_change_ms = last_tick;
  uint64_t last_tx = g_session.channel().state.txCountGlobal;
  for (;;) {
    if (g_session.halted()) break;
    const uint64_t tx = g_session.channel().state.txCountGlobal;
    if (tx != last_tx) {
      last_tx = tx;
      g_last_change_ms = fw::serial().now_ms();
    }
    if (g_session.synced() && !g_session.has_pending() && !g_session.has_hub_request()) {
      const Step st = next_step(payments_done());
      // Done: stop, unless lingering for the hub's requests (nothing changed for linger s).
      // A pending operation in the channel (e.g. the hub's collateral deposit on its way
      // to the chain) keeps a lingering device until the operation's timeout.
      const ChannelState& cs = g_session.channel().state;
      const bool ops_pending = channel_has_pending(cs) && (cs.timeout == 0 || now_unix() < cs.timeout);
      if (st == Step::Done &&
          (g_refused || g_flash_failed || g_linger_s == 0 ||
           (fw::serial().now_ms() - g_last_change_ms >= g_linger_s * 1000u && !ops_pending) ||
           cs.txCountGlobal == 0))
        break;
    }
    bm::MqttMessage m;
    bool got = false;
    if (mqtt.poll(m, &got) != Status::Ok) {
      ++g_reconnects;
      connect_broker();
      continue;
    }
    if (got && user_topic_is(m, "request")) {
      const Status r = g_session.on_hub_request(m.payload, m.payload_len, now_unix(), *g_fx);
      line("REQUEST", static_cast<uint64_t>(r), nullptr, 0);
      g_last_change_ms = fw::serial().now_ms();
      if (g_fx->needsChain) ask_relay();
      if (!carry_out(*g_fx)) return finish(kExitFlash);
      continue;
    }
    if (got && g_gateway && user_topic_is(m, "chain/down")) {
      if (!on_relay_message(m.payload, m.payload_len)) return finish(kExitFlash);
      continue;
    }
    if (got && topic_is(m, g_topic_reply)) {
      const uint64_t t0 = fw::instructions();
      const Status r = g_session.on_reply(m.payload, m.payload_len, now_unix(), *g_fx);
      const uint64_t spent = fw::instructions() - t0;
      if (r == Status::Ok && g_fx->event == SessionEvent::UpdateCompleted) {
        line("ACKED", g_fx->txCountGlobal, nullptr, 0);
        if (g_fx->reason == UpdateReason::Payment && g_pay_first_ms != 0) {
          ++g_pays_timed;
          g_pay_last_ms = fw::serial().now_ms();
        }
        if (g_fx->reason == UpdateReason::Payment && g_insn_whole) {
          g_insn_current += spent;
          if (!carry_out(*g_fx)) return finish(kExitFlash);
          ++g_insn_measured;
          g_insn_pay_sum += g_insn_current;
          if (g_insn_current > g_insn_pay_max) g_insn_pay_max = g_insn_current;
          g_insn_whole = false;
          continue;
        }
        g_insn_whole = false;
      }
      if (!carry_out(*g_fx)) return finish(kExitFlash);
      continue;
    }
    const uint32_t now_ms = fw::serial().now_ms();
    if (now_ms - last_tick >= 200) {
      last_tick = now_ms;
      (void)g_session.tick(now_unix(), *g_fx);
      if (g_fx->count > 0) g_insn_whole = false;  // a re-send: not a clean measurement
      if (!carry_out(*g_fx)) return finish(kExitFlash);
      // Waiting for the chain (our deposit, or a hub request that needs chain facts).
      const ChannelState& cs = g_session.channel().state;
      if (g_gateway && g_session.synced() &&
          (deposit_waits_for_chain() || g_session.has_hub_request() || !cs.pendingDepositWeiHub.is_zero()))
        ask_relay();
      // Nothing from the broker for 3 s while the session re-sends every second: the
      // stream is dead or was re-opened under us (QEMU reconnects its socket): CONNECT again.
      if (mqtt.idle_rx_ms() > 3000) {
        ++g_reconnects;
        connect_broker();
      }
    }
  }

  if (g_flash_failed) return finish(kExitFlash);
  if (g_refused) {
    if (g_dirty) (void)store_record();
    return finish(kExitRefused);
  }
  if (g_session.halted()) {
    fw::print("FAIL the session halted: ");
    fw::print(status_name(g_session.last_status()));
    fw::print("\n");
    (void)store_record();
    return finish(kExitHalted);
  }
  // Done paying: verify the latest countersignature before relying on the state.
  if (g_session.verify_evidence() != Status::Ok) {
    fw::print("FAIL the hub's countersignature on the latest state (txCountGlobal ");
    fw::print_u64(g_session.channel().state.txCountGlobal);
    fw::print(") is not the hub's: the session halted\n");
    return finish(kExitBadCountersig);
  }
  if (store_record() != Status::Ok) return finish(kExitFlash);
  if (encode_channel_state(g_session.channel(), g_io, sizeof g_io, &n) == Status::Ok)
    line("FINAL", g_session.channel().state.txCountGlobal, g_io, n);
  mqtt.disconnect();
  return finish(0);
}
