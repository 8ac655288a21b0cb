// The picopay firmware application: proves on the target CPU that the core works.
//
//  1. Keccak-256 vectors (docs/design.md §3) and streaming = one-shot.
//  2. The Connext v1 reference channel state: hash, eth_sign signature, recovery,
//     EIP-55 address, wrong-signer and high-S (EIP-2) rejection.
//  3. Wire codec round trips of every message kind, and refusal of truncated input
//     and trailing bytes.
//  4. A scripted channel: the device (user, key 0x22..22) pays the hub (key 0x33..33)
//     kPayments times. Each payment is proposed and signed, persisted to the flash
//     store *before* it is sent (docs/design.md §4.1), "sent" (printed), countersigned by a
//     simulated hub, and the countersignature verified and persisted. At one payment
//     the power is cut in the middle of the flash write; the rebooted device recovers
//     the previous state and goes on. Then a thread with three thread payments.
//     The printed lines (STATE/UPDATE/THREAD/TUPDATE, wire hex) are checked on the
//     host by tests/firmware/firmware_check.cpp with the host build of the core.
//  5. The device session (picopay::Session, the code the paying image device.cpp runs)
//     opens a channel and pays a hub simulated in memory, with lazy verification.
//  6. Measurements: painted stack of the signing path, retired instructions per payment.
//
// Output: one line per item; "RESULT <failed checks>" last. Returns the failure count.
#include <cstring>

#include "board.hpp"
#include "console.hpp"
#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/keccak.hpp"
#include "picopay/session.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/hooks.hpp"
#include "picopay/port/baremetal/ram_flash.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"

using namespace picopay;
namespace bm = picopay::port::baremetal;

namespace {

constexpr int kPayments = 8;
constexpr int kPowerCutAt = 5;  // payment whose first save loses power

int g_failed = 0;

using fw::print_hex;
using fw::print_u64;

void check(const char* name, bool ok) {
  fw::print(ok ? "PASS " : "FAIL ");
  fw::print(name);
  fw::print("\n");
  if (!ok) ++g_failed;
}

void check_status(const char* name, Status got, Status want) {
  check(name, got == want);
  if (got != want) {
    fw::print("  got ");
    fw::print(status_name(got));
    fw::print(", want ");
    fw::print(status_name(want));
    fw::print("\n");
  }
}

using fw::metric;

bool hex_is(const uint8_t* bytes, size_t len, const char* hex) {
  uint8_t want[64];
  size_t n = 0;
  return hex_decode(hex, std::strlen(hex), want, sizeof want, &n) == Status::Ok && n == len &&
         std::memcmp(bytes, want, len) == 0;
}

// ---- state of the application: static, so the size report counts it as RAM -------

PrivateKey g_user_key;
PrivateKey g_hub_key;
Signer g_signer;
ChannelContext g_ctx;
SignedChannelState g_prev;  // latest double-signed state
SignedChannelState g_next;
ChannelState g_hub_next;
ChannelUpdate g_update;
uint8_t g_wire[kMaxWireMessage];
ThreadState g_threads_items[1];
Hash32 g_threads_scratch[3];
bm::RamFlash* g_flash;

uint64_t g_insn_payment_max = 0;
uint64_t g_insn_payment_sum = 0;
uint64_t g_insn_sign = 0;
uint64_t g_insn_verify = 0;
size_t g_stack_sign = 0;
size_t g_stack_payment = 0;

Address kContract;
constexpr const char* kContractHex = "0x7d73424a8256c0b2ba245e5d5a3de8820e45f390";

// ---- 1. keccak --------------------------------------------------------------------

void run_keccak() {
  uint8_t h[32];
  keccak256(nullptr, 0, h);
  check("keccak256(\"\")", hex_is(h, 32, "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"));
  const uint8_t abc[3] = {'a', 'b', 'c'};
  keccak256(abc, 3, h);
  check("keccak256(\"abc\")", hex_is(h, 32, "4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45"));
  // Streaming in uneven pieces across the 136-byte rate equals one-shot.
  uint8_t data[300];
  for (size_t i = 0; i < sizeof data; ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  uint8_t one[32], two[32];
  keccak256(data, sizeof data, one);
  Keccak256 k;
  k.update(data, 1);
  k.update(data + 1, 135);
  k.update(data + 136, 137);
  k.update(data + 273, 27);
  k.final(two);
  check("keccak256 streaming == one-shot (300 B)", std::memcmp(one, two, 32) == 0);
  fw::print("KECCAK300 ");
  print_hex(one, 32);
  fw::print("\n");
}

// ---- 2. the Connext v1 reference vector --------------------------------------------

ChannelState reference_state(const Address& user) {
  ChannelState s = channel_state_zero();
  s.contractAddress = kContract;
  s.user = user;
  s.recipient = user;
  s.pendingDepositWeiUser = U256::from_u64(100);
  s.txCountGlobal = 1;
  s.txCountChain = 1;
  return s;
}

void run_reference(const Address& user) {
  char text[kSignatureTextSize];
  address_to_eip55(user, text);
  check("address of key 0x22..22 (EIP-55)",
        std::strcmp(text, "0x1563915e194D8CfBA1943570603F7606A3115508") == 0);

  const ChannelState s = reference_state(user);
  const Hash32 h = channel_hash(s);
  check("reference channel hash",
        hex_is(h.bytes, 32, "94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97"));

  Signature sig;
  check_status("reference sign_eth", g_signer.sign_eth(g_user_key, h, sig), Status::Ok);
  signature_to_hex(sig, text);
  check("reference signature",
        std::strcmp(text,
                    "0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd111d3f7c772a27df6a61fdb901"
                    "0d9ace38a5bbeb0a83902a1ba0c6fc61b97648851c") == 0);
  fw::print("REFSIG ");
  fw::print(text);
  fw::print("\n");

  Address rec;
  check_status("reference recover_eth", g_signer.recover_eth(h, sig, rec), Status::Ok);
  check("reference recovers the user", rec == user);
  check_status("verify_eth by the user", g_signer.verify_eth(h, sig, user), Status::Ok);
  check_status("verify_eth by the hub is WrongSigner", g_signer.verify_eth(h, sig, g_ctx.hub),
               Status::WrongSigner);

  // s' = n - s with the other v is the same signature's high-S twin: refused (EIP-2).
  static constexpr uint8_t kOrder[32] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                         0xff, 0xff, 0xff, 0xff, 0xfe, 0xba, 0xae, 0xdc, 0xe6, 0xaf, 0x48,
                                         0xa0, 0x3b, 0xbf, 0xd2, 0x5e, 0x8c, 0xd0, 0x36, 0x41, 0x41};
  Signature high = sig;
  int borrow = 0;
  for (int i = 31; i >= 0; --i) {
    const int d = kOrder[i] - sig.s[i] - borrow;
    high.s[i] = static_cast<uint8_t>(d & 0xFF);
    borrow = d < 0 ? 1 : 0;
  }
  high.v = static_cast<uint8_t>(sig.v == 27 ? 28 : 27);
  check_status("high-S twin is refused", g_signer.recover_eth(h, high, rec), Status::HighS);
}

// ---- 3. codec round trips ----------------------------------------------------------

template <typename T, typename Enc, typename Dec>
void round_trip(const char* name, const T& value, Enc enc, Dec dec) {
  // Test-harness temporaries live on the stack (not the payment path's RAM).
  T back;
  size_t n = 0;
  const Status e = enc(value, g_wire, sizeof g_wire, &n);
  check_status(name, e, Status::Ok);
  if (e != Status::Ok) return;
  check_status("  decodes", dec(g_wire, n, back), Status::Ok);
  size_t n2 = 0;
  uint8_t again[kMaxWireMessage];
  check("  re-encodes to the same bytes",
        enc(back, again, sizeof again, &n2) == Status::Ok && n2 == n && std::memcmp(again, g_wire, n) == 0);
  check_status("  truncated input is refused", dec(g_wire, n - 1, back), Status::Truncated);
  g_wire[n] = 0;
  check_status("  trailing byte is refused", dec(g_wire, n + 1, back), Status::TrailingBytes);
  size_t need = 0;
  check_status("  small buffer reports BufferTooSmall", enc(value, again, n - 1, &need), Status::BufferTooSmall);
  check("  and the size needed", need == n);
}

void run_codec(const Address& user) {
  SignedChannelState sc{};
  sc.state = reference_state(user);
  sc.state.balanceWeiHub = U256::max();
  sc.hasSigUser = true;
  (void)g_signer.sign_eth(g_user_key, channel_hash(sc.state), sc.sigUser);
  round_trip("codec: channel state", sc, encode_channel_state, decode_channel_state);

  SignedThreadState st{};
  st.state = thread_state_zero();
  st.state.contractAddress = kContract;
  st.state.sender = user;
  st.state.receiver = g_ctx.hub;
  st.state.threadId = 7;
  st.state.balanceWeiSender = U256::from_u64(123456789);
  st.hasSigA = true;
  (void)g_signer.sign_eth(g_user_key, thread_hash(st.state), st.sigA);
  round_trip("codec: thread state", st, encode_thread_state, decode_thread_state);

  ChannelUpdate& u = g_update;
  u = channel_update_make(UpdateReason::Payment);
  u.txCountGlobal = 42;
  u.payment.recipient = Party::Hub;
  u.payment.amountWei = U256::from_u64(1000);
  u.sig = sc.sigUser;
  round_trip("codec: channel update (Payment)", u, encode_channel_update, decode_channel_update);

  ThreadUpdate tu{};
  tu.sender = user;
  tu.threadId = 7;
  tu.txCount = 3;
  tu.amountWei = U256::from_u64(5);
  tu.sig = st.sigA;
  round_trip("codec: thread update", tu, encode_thread_update, decode_thread_update);
}

// ---- 4. scripted payments ----------------------------------------------------------

void print_state(const char* tag, int i, const SignedChannelState& s) {
  size_t n = 0;
  if (encode_channel_state(s, g_wire, sizeof g_wire, &n) != Status::Ok) {
    check("encode state for output", false);
    return;
  }
  fw::print(tag);
  fw::print(" ");
  print_u64(static_cast<uint64_t>(i));
  fw::print(" ");
  print_hex(g_wire, n);
  fw::print("\n");
}

Status persist(bm::FlashStateStore& store, const SignedChannelState& s) {
  size_t n = 0;
  const Status e = encode_channel_state(s, g_wire, sizeof g_wire, &n);
  if (e != Status::Ok) return e;
  return store.save(g_wire, n);
}

Status restore(bm::FlashStateStore& store, SignedChannelState& out) {
  size_t n = 0;
  const Status e = store.load(g_wire, sizeof g_wire, &n);
  if (e != Status::Ok) return e;
  return decode_channel_state(g_wire, n, out);
}

// One payment of `amount` wei from the device to the hub, from g_prev. On Ok, g_prev is
// the new double-signed state. `cut_power` arms a power cut in the middle of the save.
Status pay(bm::FlashStateStore& store, int i, uint64_t amount, bool cut_power) {
  ThreadSet threads{g_threads_items, 0, 1, g_threads_scratch};
  const uint64_t t0 = fw::instructions();

  // Propose and sign (the signing path whose stack is measured).
  g_update = channel_update_make(UpdateReason::Payment);
  g_update.payment.recipient = Party::Hub;
  g_update.payment.amountWei = U256::from_u64(amount);
  fw::stack_paint();
  Status e = channel_propose(g_ctx, g_signer, g_user_key, Party::User, g_prev.state, threads, g_update,
                             g_next.state);
  const size_t stack = fw::stack_used();
  if (stack > g_stack_sign) g_stack_sign = stack;
  const uint64_t t1 = fw::instructions();
  if (e != Status::Ok) return e;
  g_next.hasSigUser = true;
  g_next.sigUser = g_update.sig;
  g_next.hasSigHub = false;

  // Persist before the signature leaves the device (docs/design.md §4.1).
  if (cut_power) g_flash->arm_power_cut(9, bm::RamFlash::CutMode::Torn, 77);
  e = persist(store, g_next);
  if (e != Status::Ok) return e;
  size_t n = 0;
  e = encode_channel_update(g_update, g_wire, sizeof g_wire, &n);
  if (e != Status::Ok) return e;
  fw::print("UPDATE ");
  print_u64(static_cast<uint64_t>(i));
  fw::print(" ");
  print_hex(g_wire, n);
  fw::print("\n");
  const uint64_t t2 = fw::instructions();

  // The hub (simulated here; on the host in real life) rebuilds, checks, countersigns.
  Hash32 hash;
  e = channel_accept(g_ctx, g_signer, Party::Hub, g_prev.state, threads, g_update, g_hub_next, hash);
  if (e != Status::Ok) return e;
  Signature hub_sig;
  e = g_signer.sign_eth(g_hub_key, hash, hub_sig);
  if (e != Status::Ok) return e;
  const uint64_t t3 = fw::instructions();

  // The device checks the countersignature and persists the double-signed state.
  fw::stack_paint();
  e = g_signer.verify_eth(channel_hash(g_next.state), hub_sig, g_ctx.hub);
  const size_t vstack = fw::stack_used();
  if (vstack > g_stack_payment) g_stack_payment = vstack;
  const uint64_t t4 = fw::instructions();
  if (e != Status::Ok) return e;
  g_next.hasSigHub = true;
  g_next.sigHub = hub_sig;
  e = persist(store, g_next);
  if (e != Status::Ok) return e;
  const uint64_t t5 = fw::instructions();

  // A payment's device cost leaves the countersignature check out: the paying device
  // (device.cpp) verifies a payment's countersignature lazily, before it relies on the
  // state (docs/firmware.md); this check image verifies every one, measured apart.
  const uint64_t device = (t2 - t0) + (t5 - t4);
  g_insn_payment_sum += device;
  if (device > g_insn_payment_max) g_insn_payment_max = device;
  g_insn_sign = t1 - t0;
  g_insn_verify = t4 - t3;
  g_prev = g_next;
  print_state("STATE", i, g_prev);
  return Status::Ok;
}

void run_payments(const Address& user) {
  static bm::RamFlash flash(fw::flash_memory(), fw::kFlashSector, fw::kFlashSectors, 8);
  g_flash = &flash;
  bm::FlashStateStore store(flash, 0);
  check("flash store geometry", store.valid());

  // The opened channel: user deposit confirmed, both signed (txCount 1/1).
  g_prev = SignedChannelState{};
  g_prev.state = channel_state_zero();
  g_prev.state.contractAddress = kContract;
  g_prev.state.user = user;
  g_prev.state.recipient = user;
  g_prev.state.balanceWeiHub = U256::from_u64(2000000);
  g_prev.state.balanceWeiUser = U256::from_u64(1000000);
  g_prev.state.txCountGlobal = 1;
  g_prev.state.txCountChain = 1;
  g_prev.hasSigUser = g_prev.hasSigHub = true;
  const Hash32 h0 = channel_hash(g_prev.state);
  check_status("open: user signs", g_signer.sign_eth(g_user_key, h0, g_prev.sigUser), Status::Ok);
  check_status("open: hub signs", g_signer.sign_eth(g_hub_key, h0, g_prev.sigHub), Status::Ok);
  check_status("open: persisted", persist(store, g_prev), Status::Ok);
  print_state("STATE", 0, g_prev);

  int done = 0;
  for (int i = 1; i <= kPayments; ++i) {
    const uint64_t amount = 1000u * static_cast<uint64_t>(i) + 7u;
    if (i == kPowerCutAt) {
      const Status e = pay(store, i, amount, true);
      check_status("power cut during the save is reported", e, Status::IoError);
      flash.power_on();  // reboot
      bm::FlashStateStore rebooted(flash, 0);
      const Status r = restore(rebooted, g_next);
      check_status("after the cut: the store loads", r, Status::Ok);
      check("after the cut: the previous state, intact",
            r == Status::Ok && g_next.state == g_prev.state && g_next.sigHub == g_prev.sigHub);
      g_prev = g_next;  // go on from what the flash says
    }
    const Status e = pay(store, i, amount, false);
    check_status("payment", e, Status::Ok);
    if (e == Status::Ok) ++done;
  }
  check("all payments done", done == kPayments);

  // Reboot: the flash holds the last double-signed state.
  bm::FlashStateStore rebooted(flash, 0);
  const Status r = restore(rebooted, g_next);
  check_status("final state loads after reboot", r, Status::Ok);
  check("final state is the last payment's",
        r == Status::Ok && g_next.state == g_prev.state && g_next.sigUser == g_prev.sigUser &&
            g_next.sigHub == g_prev.sigHub);
  print_state("FINAL", kPayments, g_next);
  check("balances: user paid the sum",
        g_next.state.balanceWeiUser == U256::from_u64(1000000 - (1000 * 36 + 7 * 8)));
  check("no flash unit programmed twice", flash.reprogram_violations() == 0);
}

// A thread (virtual channel) from the device to a payee: three thread payments, each
// signed by the device alone.
void run_thread(const Address& user) {
  static SignedThreadState prev;
  static SignedThreadState next;
  prev = SignedThreadState{};
  prev.state = thread_state_zero();
  prev.state.contractAddress = kContract;
  prev.state.sender = user;
  prev.state.receiver = g_ctx.hub;  // any payee; the hub's address keeps the check simple
  prev.state.threadId = 1;
  prev.state.balanceWeiSender = U256::from_u64(50000);
  prev.hasSigA = true;
  check_status("thread: initial state signed",
               g_signer.sign_eth(g_user_key, thread_hash(prev.state), prev.sigA), Status::Ok);
  size_t n = 0;
  for (int i = 0; i <= 3; ++i) {
    if (i > 0) {
      ThreadUpdate u{};
      const Status e = thread_propose(g_signer, g_user_key, prev.state, U256::from_u64(100u * i), U256::zero(),
                                      u, next.state);
      check_status("thread payment", e, Status::Ok);
      if (e != Status::Ok) return;
      next.hasSigA = true;
      next.sigA = u.sig;
      if (encode_thread_update(u, g_wire, sizeof g_wire, &n) == Status::Ok) {
        fw::print("TUPDATE ");
        print_u64(static_cast<uint64_t>(i));
        fw::print(" ");
        print_hex(g_wire, n);
        fw::print("\n");
      }
      prev = next;
    }
    if (encode_thread_state(prev, g_wire, sizeof g_wire, &n) == Status::Ok) {
      fw::print("THREAD ");
      print_u64(static_cast<uint64_t>(i));
      fw::print(" ");
      print_hex(g_wire, n);
      fw::print("\n");
    }
  }
}

// ---- 5. the device session (the same code the paying device image runs) ---------------

// The session (user 0x22..22) pays a hub simulated here (0x33..33): every message it
// hands out is answered as picopay-hub would (Sync with the genesis state, then for each
// update channel_accept + countersignature in an Ack). Lazy verification is on; the
// evidence is verified at the end.
void run_session(const Address& user) {
  static Session session;
  static SessionThread threads[1];
  static ThreadState items[1];
  static Hash32 scratch[3];
  static Effects fx;
  static SignedChannelState hub_latest;
  static ChannelState hub_next;
  SessionConfig cfg = session_config_default();
  cfg.contract = kContract;
  cfg.user = user;
  cfg.hub = g_ctx.hub;
  cfg.verifyCountersigOnPayment = false;
  cfg.hasChainAccess = true;
  const SessionStorage storage{threads, 1, items, scratch};
  check_status("session: init", session.init(cfg, g_signer, g_user_key, storage), Status::Ok);
  constexpr uint64_t kNow = 1800000000;
  ChainFacts facts{};
  facts.known = true;
  facts.txCountChain = 1;
  facts.blockTime = kNow;
  (void)session.on_chain_fact(facts, kNow, fx);

  hub_latest = SignedChannelState{};
  hub_latest.state = channel_state_zero();
  hub_latest.state.contractAddress = kContract;
  hub_latest.state.user = user;
  hub_latest.state.recipient = user;
  check_status("session: on_connect", session.on_connect(kNow, fx), Status::Ok);
  int completed = 0;
  // Bounded: deposit, ConfirmPending, 3 payments, one message per step.
  for (int step = 0; step < 12; ++step) {
    Reply r{};
    if (fx.count > 0 && fx.out[0].route == Route::ToHubSync) {
      r.kind = ReplyKind::Sync;
      r.txCountGlobal = hub_latest.state.txCountGlobal;
      r.state = hub_latest;
    } else if (fx.count > 0 && fx.out[0].route == Route::ToHubUpdate) {
      check("session: persist before it sends", fx.persist);
      Hash32 h;
      ThreadSet ts{g_threads_items, 0, 1, g_threads_scratch};
      if (decode_channel_update(fx.out[0].bytes, fx.out[0].len, g_update) != Status::Ok ||
          channel_accept(g_ctx, g_signer, Party::Hub, hub_latest.state, ts, g_update, hub_next, h) != Status::Ok ||
          g_signer.sign_eth(g_hub_key, h, r.sig) != Status::Ok) {
        check("session: the simulated hub accepts the update", false);
        return;
      }
      hub_latest.state = hub_next;
      hub_latest.sigUser = g_update.sig;
      hub_latest.sigHub = r.sig;
      hub_latest.hasSigUser = hub_latest.hasSigHub = true;
      r.kind = ReplyKind::Ack;
      r.txCountGlobal = g_update.txCountGlobal;
    } else {
      // Nothing in flight: the device's next step.
      const ChannelState& s = session.channel().state;
      Status e;
      if (s.txCountGlobal == 0) {
        e = session.request_deposit(U256::from_u64(1000000), U256::zero(), kNow + 3600, kNow, fx);
      } else if (!s.pendingDepositWeiUser.is_zero()) {
        Hash32 txh;
        std::memset(txh.bytes, 0xcc, sizeof txh.bytes);
        e = session.propose_confirm_pending(txh, kNow, fx);
      } else if (s.txCountGlobal < 5) {
        e = session.propose_payment(U256::from_u64(1000), U256::zero(), kNow, fx);
      } else {
        break;
      }
      check_status("session: propose", e, Status::Ok);
      if (e != Status::Ok) return;
      continue;
    }
    size_t n = 0;
    if (encode_reply(r, g_wire, sizeof g_wire, &n) != Status::Ok) {
      check("session: encode the reply", false);
      return;
    }
    const Status e = session.on_reply(g_wire, n, kNow, fx);
    if (e != Status::Ok) check_status("session: on_reply", e, Status::Ok);
    if (fx.event == SessionEvent::UpdateCompleted) ++completed;
  }
  check("session: deposit, ConfirmPending and 3 payments completed", completed == 5);
  check_status("session: verify_evidence", session.verify_evidence(), Status::Ok);
  check("session: device and hub hold the same state", session.channel().state == hub_latest.state &&
                                                            session.channel().sigHub == hub_latest.sigHub);
  check("session: the user paid 3000 wei", session.channel().state.balanceWeiUser == U256::from_u64(1000000 - 3000));
}

}  // namespace

int firmware_run() noexcept {
  fw::print("picopay firmware checks\n");
  std::memset(g_user_key.bytes, 0x22, 32);
  std::memset(g_hub_key.bytes, 0x33, 32);
  check_status("contract address parses", address_parse(kContractHex, std::strlen(kContractHex), kContract),
               Status::Ok);

  uint8_t seed[32];
  bm::HookEntropy entropy(fw::entropy, nullptr);
  check_status("entropy for context blinding", entropy.fill(seed, sizeof seed), Status::Ok);
  const uint64_t t0 = fw::instructions();
  check_status("signer init (preallocated context)", g_signer.init(seed), Status::Ok);
  if (fw::instructions_known()) metric("insn_signer_init", fw::instructions() - t0);
  secure_wipe(seed, sizeof seed);

  Address user{}, hub{};
  check_status("user address", g_signer.address_of(g_user_key, user), Status::Ok);
  check_status("hub address", g_signer.address_of(g_hub_key, hub), Status::Ok);
  g_ctx.hub = hub;

  run_keccak();
  {  // Where a payment's instructions go: the state hash and the signature.
    const ChannelState st = reference_state(user);
    const uint64_t a = fw::instructions();
    const Hash32 h = channel_hash(st);
    const uint64_t b = fw::instructions();
    Signature sg;
    (void)g_signer.sign_eth(g_user_key, h, sg);
    const uint64_t c = fw::instructions();
    (void)g_signer.sign_digest(g_user_key, h, sg);
    const uint64_t d = fw::instructions();
    if (fw::instructions_known()) {
      metric("insn_channel_hash", b - a);
      metric("insn_sign_eth", c - b);
      metric("insn_sign_digest", d - c);
    }
  }
  run_reference(user);
  run_codec(user);
  run_payments(user);
  run_thread(user);
  run_session(user);

  if (fw::instructions_known()) {
    metric("instructions_per_payment", g_insn_payment_sum / kPayments);
    metric("instructions_per_payment_max", g_insn_payment_max);
    metric("insn_propose_sign", g_insn_sign);
    metric("insn_verify_countersig", g_insn_verify);
  }
#if defined(__arm__) && defined(__thumb__)
  // Calibration of the counter: 1,000,000 turns of a 2-instruction loop.
  uint32_t turns = 1000000;
  const uint64_t c0 = fw::instructions();
  __asm__ volatile("1: subs %0, %0, #1\n bne 1b" : "+r"(turns) : : "cc");
  metric("insn_calibration_2000000", fw::instructions() - c0);
#endif
  if (g_stack_sign > 0) {
    metric("stack_sign", g_stack_sign);
    metric("stack_verify", g_stack_payment);
  }
  metric("sizeof_signer", sizeof(Signer));
  fw::print("RESULT ");
  print_u64(static_cast<uint64_t>(g_failed));
  fw::print("\n");
  secure_wipe(g_user_key.bytes, 32);
  secure_wipe(g_hub_key.bytes, 32);
  return g_failed;
}
