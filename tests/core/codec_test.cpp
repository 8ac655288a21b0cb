// Wire codec (docs/wire-format.md): round trips with extreme values, size targets,
// refusal of every malformed class, BufferTooSmall, and a deterministic fuzz loop
// checking that decode never crashes and that whatever decodes re-encodes identically.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <string>
#include <vector>

#include "picopay/codec.hpp"
#include "picopay/signer.hpp"
#include "test_util.hpp"

using namespace picopay;
using picopay_test::Rng;
using picopay_test::to_hex;
using picopay_test::u;

namespace {

// Scratch buffer size for encodes: larger than every kMax*Wire bound (see
// CodecBounds.MaxWireMessageCoversEveryKind for why not kMaxWireMessage).
constexpr size_t kBuf = 1024;

const Signer& signer() {
  static Signer s;
  if (!s.ready()) {
    Status st = s.init();
    if (st != Status::Ok) std::abort();
  }
  return s;
}

// A real (low-S, v 27/28) signature over a random hash with a random key.
Signature random_sig(Rng& rng) {
  PrivateKey k;
  rng.fill(k.bytes, 32);
  Hash32 h;
  rng.fill(h.bytes, 32);
  Signature sig;
  if (signer().sign_eth(k, h, sig) != Status::Ok) std::abort();
  return sig;
}

U256 pick_amount(Rng& rng) {
  switch (rng.below(5)) {
    case 0: return U256::zero();
    case 1: return u(1);
    case 2: return U256::max();
    default: return picopay_test::random_u256_any_size(rng);
  }
}
uint64_t pick_counter(Rng& rng) {
  switch (rng.below(5)) {
    case 0: return 0;
    case 1: return 1;
    case 2: return kMaxCounter;
    case 3: return rng.below(300);
    default: return rng.below(kMaxCounter + 1);
  }
}
Address pick_address(Rng& rng) {
  Address a;
  rng.fill(a.bytes, 20);
  return a;
}
Hash32 pick_hash(Rng& rng) {
  Hash32 h;
  rng.fill(h.bytes, 32);
  return h;
}

SignedChannelState random_channel_state(Rng& rng) {
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  ChannelState& s = c.state;
  s.contractAddress = pick_address(rng);
  s.user = pick_address(rng);
  s.recipient = rng.below(2) ? s.user : pick_address(rng);
  U256* amounts[] = {&s.balanceWeiHub,          &s.balanceWeiUser,           &s.balanceTokenHub,
                     &s.balanceTokenUser,       &s.pendingDepositWeiHub,     &s.pendingDepositWeiUser,
                     &s.pendingDepositTokenHub, &s.pendingDepositTokenUser,  &s.pendingWithdrawalWeiHub,
                     &s.pendingWithdrawalWeiUser, &s.pendingWithdrawalTokenHub, &s.pendingWithdrawalTokenUser};
  for (U256* a : amounts) *a = pick_amount(rng);
  s.txCountGlobal = pick_counter(rng);
  s.txCountChain = pick_counter(rng);
  s.threadCount = pick_counter(rng);
  s.timeout = pick_counter(rng);
  s.threadRoot = rng.below(2) ? Hash32{} : pick_hash(rng);
  c.hasSigUser = rng.below(2) != 0;
  c.hasSigHub = rng.below(2) != 0;
  if (c.hasSigUser) c.sigUser = random_sig(rng);
  if (c.hasSigHub) c.sigHub = random_sig(rng);
  return c;
}

SignedThreadState random_thread_state(Rng& rng, bool with_sig) {
  SignedThreadState t;
  std::memset(&t, 0, sizeof t);
  t.state.contractAddress = pick_address(rng);
  t.state.sender = pick_address(rng);
  t.state.receiver = pick_address(rng);
  t.state.threadId = pick_counter(rng);
  t.state.balanceWeiSender = pick_amount(rng);
  t.state.balanceWeiReceiver = pick_amount(rng);
  t.state.balanceTokenSender = pick_amount(rng);
  t.state.balanceTokenReceiver = pick_amount(rng);
  t.state.txCount = pick_counter(rng);
  t.hasSigA = with_sig;
  if (with_sig) t.sigA = random_sig(rng);
  return t;
}

Party pick_party(Rng& rng) { return rng.below(2) ? Party::User : Party::Hub; }

ChannelUpdate random_update(Rng& rng, UpdateReason reason) {
  ChannelUpdate x = channel_update_make(reason);
  x.txCountGlobal = pick_counter(rng);
  switch (reason) {
    case UpdateReason::Payment:
      x.payment.recipient = pick_party(rng);
      x.payment.amountWei = pick_amount(rng);
      x.payment.amountToken = pick_amount(rng);
      break;
    case UpdateReason::Exchange:
      x.exchange.seller = pick_party(rng);
      x.exchange.weiToSell = pick_amount(rng);
      x.exchange.tokensToSell = pick_amount(rng);
      x.exchange.exchangeRate = pick_amount(rng);
      break;
    case UpdateReason::ProposePendingDeposit:
      x.deposit.depositWeiHub = pick_amount(rng);
      x.deposit.depositWeiUser = pick_amount(rng);
      x.deposit.depositTokenHub = pick_amount(rng);
      x.deposit.depositTokenUser = pick_amount(rng);
      x.deposit.timeout = pick_counter(rng);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      x.withdrawal.recipient = pick_address(rng);
      x.withdrawal.withdrawalWeiHub = pick_amount(rng);
      x.withdrawal.withdrawalWeiUser = pick_amount(rng);
      x.withdrawal.withdrawalTokenHub = pick_amount(rng);
      x.withdrawal.withdrawalTokenUser = pick_amount(rng);
      x.withdrawal.timeout = pick_counter(rng);
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      x.chainTx.transactionHash = pick_hash(rng);
      break;
    case UpdateReason::Invalidation:
      x.invalidation.previousValidTxCount = pick_counter(rng);
      x.invalidation.lastInvalidTxCount = pick_counter(rng);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      x.thread.thread = random_thread_state(rng, true);
      break;
  }
  x.sig = random_sig(rng);
  return x;
}

ThreadUpdate random_thread_update(Rng& rng) {
  ThreadUpdate t;
  std::memset(&t, 0, sizeof t);
  t.sender = pick_address(rng);
  t.threadId = pick_counter(rng);
  t.txCount = pick_counter(rng);
  t.amountWei = pick_amount(rng);
  t.amountToken = pick_amount(rng);
  t.sig = random_sig(rng);
  return t;
}

// ------------------------------------------------------------------ equality helpers

void expect_signed_channel_eq(const SignedChannelState& a, const SignedChannelState& b) {
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.hasSigUser, b.hasSigUser);
  EXPECT_EQ(a.hasSigHub, b.hasSigHub);
  if (a.hasSigUser && b.hasSigUser) {
    EXPECT_EQ(a.sigUser, b.sigUser);
  }
  if (a.hasSigHub && b.hasSigHub) {
    EXPECT_EQ(a.sigHub, b.sigHub);
  }
}
void expect_signed_thread_eq(const SignedThreadState& a, const SignedThreadState& b) {
  EXPECT_EQ(a.state, b.state);
  EXPECT_EQ(a.hasSigA, b.hasSigA);
  if (a.hasSigA && b.hasSigA) {
    EXPECT_EQ(a.sigA, b.sigA);
  }
}
void expect_update_eq(const ChannelUpdate& a, const ChannelUpdate& b) {
  ASSERT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.txCountGlobal, b.txCountGlobal);
  EXPECT_EQ(a.sig, b.sig);
  switch (a.reason) {
    case UpdateReason::Payment:
      EXPECT_EQ(a.payment.recipient, b.payment.recipient);
      EXPECT_EQ(a.payment.amountWei, b.payment.amountWei);
      EXPECT_EQ(a.payment.amountToken, b.payment.amountToken);
      break;
    case UpdateReason::Exchange:
      EXPECT_EQ(a.exchange.seller, b.exchange.seller);
      EXPECT_EQ(a.exchange.weiToSell, b.exchange.weiToSell);
      EXPECT_EQ(a.exchange.tokensToSell, b.exchange.tokensToSell);
      EXPECT_EQ(a.exchange.exchangeRate, b.exchange.exchangeRate);
      break;
    case UpdateReason::ProposePendingDeposit:
      EXPECT_EQ(a.deposit.depositWeiHub, b.deposit.depositWeiHub);
      EXPECT_EQ(a.deposit.depositWeiUser, b.deposit.depositWeiUser);
      EXPECT_EQ(a.deposit.depositTokenHub, b.deposit.depositTokenHub);
      EXPECT_EQ(a.deposit.depositTokenUser, b.deposit.depositTokenUser);
      EXPECT_EQ(a.deposit.timeout, b.deposit.timeout);
      break;
    case UpdateReason::ProposePendingWithdrawal:
      EXPECT_EQ(a.withdrawal.recipient, b.withdrawal.recipient);
      EXPECT_EQ(a.withdrawal.withdrawalWeiHub, b.withdrawal.withdrawalWeiHub);
      EXPECT_EQ(a.withdrawal.withdrawalWeiUser, b.withdrawal.withdrawalWeiUser);
      EXPECT_EQ(a.withdrawal.withdrawalTokenHub, b.withdrawal.withdrawalTokenHub);
      EXPECT_EQ(a.withdrawal.withdrawalTokenUser, b.withdrawal.withdrawalTokenUser);
      EXPECT_EQ(a.withdrawal.timeout, b.withdrawal.timeout);
      break;
    case UpdateReason::ConfirmPending:
    case UpdateReason::EmptyChannel:
      EXPECT_EQ(a.chainTx.transactionHash, b.chainTx.transactionHash);
      break;
    case UpdateReason::Invalidation:
      EXPECT_EQ(a.invalidation.previousValidTxCount, b.invalidation.previousValidTxCount);
      EXPECT_EQ(a.invalidation.lastInvalidTxCount, b.invalidation.lastInvalidTxCount);
      break;
    case UpdateReason::OpenThread:
    case UpdateReason::CloseThread:
      expect_signed_thread_eq(a.thread.thread, b.thread.thread);
      break;
  }
}
void expect_thread_update_eq(const ThreadUpdate& a, const ThreadUpdate& b) {
  EXPECT_EQ(a.sender, b.sender);
  EXPECT_EQ(a.threadId, b.threadId);
  EXPECT_EQ(a.txCount, b.txCount);
  EXPECT_EQ(a.amountWei, b.amountWei);
  EXPECT_EQ(a.amountToken, b.amountToken);
  EXPECT_EQ(a.sig, b.sig);
}

// ------------------------------------------------------------------ encode wrappers

std::vector<uint8_t> enc(const SignedChannelState& c) {
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  Status st = encode_channel_state(c, b.data(), b.size(), &n);
  EXPECT_EQ(st, Status::Ok);
  EXPECT_LE(n, kMaxChannelStateWire);
  b.resize(st == Status::Ok ? n : 0);
  return b;
}
std::vector<uint8_t> enc(const SignedThreadState& t) {
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  Status st = encode_thread_state(t, b.data(), b.size(), &n);
  EXPECT_EQ(st, Status::Ok);
  EXPECT_LE(n, kMaxThreadStateWire);
  b.resize(st == Status::Ok ? n : 0);
  return b;
}
std::vector<uint8_t> enc(const ChannelUpdate& x) {
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  Status st = encode_channel_update(x, b.data(), b.size(), &n);
  EXPECT_EQ(st, Status::Ok) << "reason " << int(x.reason);
  EXPECT_LE(n, kMaxChannelUpdateWire);
  b.resize(st == Status::Ok ? n : 0);
  return b;
}
std::vector<uint8_t> enc(const ThreadUpdate& t) {
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  Status st = encode_thread_update(t, b.data(), b.size(), &n);
  EXPECT_EQ(st, Status::Ok);
  EXPECT_LE(n, kMaxThreadUpdateWire);
  b.resize(st == Status::Ok ? n : 0);
  return b;
}

// Decoding through a heap copy of exactly len bytes, so an over-read shows up under
// sanitizers and never reads the rest of a larger buffer.
Status dec_channel(const std::vector<uint8_t>& in, SignedChannelState& out) {
  std::vector<uint8_t> copy(in);
  return decode_channel_state(copy.empty() ? nullptr : copy.data(), copy.size(), out);
}
Status dec_thread(const std::vector<uint8_t>& in, SignedThreadState& out) {
  std::vector<uint8_t> copy(in);
  return decode_thread_state(copy.empty() ? nullptr : copy.data(), copy.size(), out);
}
Status dec_update(const std::vector<uint8_t>& in, ChannelUpdate& out) {
  std::vector<uint8_t> copy(in);
  return decode_channel_update(copy.empty() ? nullptr : copy.data(), copy.size(), out);
}
Status dec_tupdate(const std::vector<uint8_t>& in, ThreadUpdate& out) {
  std::vector<uint8_t> copy(in);
  return decode_thread_update(copy.empty() ? nullptr : copy.data(), copy.size(), out);
}

// Decodes with the decoder for `kind` (byte 1 of a valid message); on Ok re-encodes.
Status decode_any(int which, const std::vector<uint8_t>& in, std::vector<uint8_t>* reencoded) {
  Status st;
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  switch (which) {
    case 0: {
      SignedChannelState v;
      st = dec_channel(in, v);
      if (st == Status::Ok) {
        EXPECT_EQ(encode_channel_state(v, b.data(), b.size(), &n), Status::Ok);
      }
      break;
    }
    case 1: {
      SignedThreadState v;
      st = dec_thread(in, v);
      if (st == Status::Ok) {
        EXPECT_EQ(encode_thread_state(v, b.data(), b.size(), &n), Status::Ok);
      }
      break;
    }
    case 2: {
      ChannelUpdate v;
      st = dec_update(in, v);
      if (st == Status::Ok) {
        EXPECT_EQ(encode_channel_update(v, b.data(), b.size(), &n), Status::Ok);
      }
      break;
    }
    default: {
      ThreadUpdate v;
      st = dec_tupdate(in, v);
      if (st == Status::Ok) {
        EXPECT_EQ(encode_thread_update(v, b.data(), b.size(), &n), Status::Ok);
      }
      break;
    }
  }
  b.resize(n);
  if (reencoded) *reencoded = b;
  return st;
}

const UpdateReason kReasons[] = {
    UpdateReason::Payment,        UpdateReason::Exchange,     UpdateReason::ProposePendingDeposit,
    UpdateReason::ProposePendingWithdrawal, UpdateReason::ConfirmPending, UpdateReason::Invalidation,
    UpdateReason::OpenThread,     UpdateReason::CloseThread,  UpdateReason::EmptyChannel,
};

// Small fixed examples ---------------------------------------------------------------

ChannelUpdate payment_example() {
  ChannelUpdate x = channel_update_make(UpdateReason::Payment);
  x.txCountGlobal = 1000;
  x.payment.recipient = Party::Hub;
  x.payment.amountWei = u(1000);
  x.payment.amountToken = U256::zero();
  Rng rng(1000);
  x.sig = random_sig(rng);
  return x;
}

SignedChannelState full_state_example() {
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  c.state.contractAddress = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
  c.state.user = picopay_test::addr("0x1563915e194D8CfBA1943570603F7606A3115508");
  c.state.recipient = c.state.user;
  c.state.balanceWeiHub = u(3000000);
  c.state.balanceWeiUser = u(2500000);
  c.state.balanceTokenHub = u(1000000);
  c.state.balanceTokenUser = u(4000000);
  c.state.txCountGlobal = 1234;
  c.state.txCountChain = 3;
  Rng rng(300);
  c.hasSigUser = c.hasSigHub = true;
  c.sigUser = random_sig(rng);
  c.sigHub = random_sig(rng);
  return c;
}

SignedThreadState thread_example() {
  Rng rng(77);
  SignedThreadState t;
  std::memset(&t, 0, sizeof t);
  t.state.contractAddress = pick_address(rng);
  t.state.sender = pick_address(rng);
  t.state.receiver = pick_address(rng);
  t.state.threadId = 5;
  t.state.balanceWeiSender = u(1000);
  t.state.txCount = 7;
  t.hasSigA = true;
  t.sigA = random_sig(rng);
  return t;
}

ThreadUpdate thread_update_example() {
  // threadId 5, txCount 7 (one-byte varints), amountWei 1000, amountToken 0:
  // | 01 04 | sender(20) | 05 | 07 | 02 03 e8 | 00 | sig(65) |  = 93 bytes
  Rng rng(88);
  ThreadUpdate t;
  std::memset(&t, 0, sizeof t);
  t.sender = pick_address(rng);
  t.threadId = 5;
  t.txCount = 7;
  t.amountWei = u(1000);
  t.sig = random_sig(rng);
  return t;
}

std::vector<uint8_t> splice(const std::vector<uint8_t>& in, size_t at, size_t remove,
                            const std::vector<uint8_t>& insert) {
  std::vector<uint8_t> out(in.begin(), in.begin() + static_cast<long>(at));
  out.insert(out.end(), insert.begin(), insert.end());
  out.insert(out.end(), in.begin() + static_cast<long>(at + remove), in.end());
  return out;
}

std::vector<std::vector<uint8_t>> valid_corpus() {
  Rng rng(4242);
  std::vector<std::vector<uint8_t>> v;
  v.push_back(enc(full_state_example()));
  v.push_back(enc(thread_example()));
  v.push_back(enc(payment_example()));
  v.push_back(enc(thread_update_example()));
  for (UpdateReason r : kReasons) v.push_back(enc(random_update(rng, r)));
  for (int i = 0; i < 3; ++i) {
    v.push_back(enc(random_channel_state(rng)));
    v.push_back(enc(random_thread_state(rng, i % 2 == 0)));
    v.push_back(enc(random_thread_update(rng)));
  }
  return v;
}

int decoder_for(const std::vector<uint8_t>& msg) { return msg[1] - 1; }

}  // namespace

// ================================================================== round trips

TEST(CodecRoundTrip, ChannelStateRandomAndExtremes) {
  Rng rng(1);
  for (int i = 0; i < 400; ++i) {
    SignedChannelState c = random_channel_state(rng);
    std::vector<uint8_t> w = enc(c);
    ASSERT_FALSE(w.empty());
    EXPECT_EQ(w[0], kWireVersion);
    EXPECT_EQ(w[1], 0x01);
    SignedChannelState d;
    ASSERT_EQ(dec_channel(w, d), Status::Ok) << to_hex(w);
    expect_signed_channel_eq(c, d);
    EXPECT_EQ(enc(d), w);
  }
  // All maxima and all zeros.
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  SignedChannelState d;
  ASSERT_EQ(dec_channel(enc(c), d), Status::Ok);
  expect_signed_channel_eq(c, d);
  c = random_channel_state(rng);
  U256* amounts[] = {&c.state.balanceWeiHub, &c.state.balanceWeiUser, &c.state.pendingWithdrawalTokenUser};
  for (U256* a : amounts) *a = U256::max();
  c.state.txCountGlobal = c.state.txCountChain = c.state.threadCount = c.state.timeout = kMaxCounter;
  ASSERT_EQ(dec_channel(enc(c), d), Status::Ok);
  expect_signed_channel_eq(c, d);
}

TEST(CodecRoundTrip, ChannelStateMaximalSizeEqualsBound) {
  Rng rng(2);
  SignedChannelState c = random_channel_state(rng);
  ChannelState& s = c.state;
  U256* amounts[] = {&s.balanceWeiHub,          &s.balanceWeiUser,           &s.balanceTokenHub,
                     &s.balanceTokenUser,       &s.pendingDepositWeiHub,     &s.pendingDepositWeiUser,
                     &s.pendingDepositTokenHub, &s.pendingDepositTokenUser,  &s.pendingWithdrawalWeiHub,
                     &s.pendingWithdrawalWeiUser, &s.pendingWithdrawalTokenHub, &s.pendingWithdrawalTokenUser};
  for (U256* a : amounts) *a = U256::max();
  s.txCountGlobal = s.txCountChain = s.threadCount = s.timeout = kMaxCounter;
  s.recipient = pick_address(rng);
  s.threadRoot = pick_hash(rng);
  c.hasSigUser = c.hasSigHub = true;
  c.sigUser = random_sig(rng);
  c.sigHub = random_sig(rng);
  std::vector<uint8_t> w = enc(c);
  EXPECT_EQ(w.size(), kMaxChannelStateWire);
}

TEST(CodecRoundTrip, ThreadState) {
  Rng rng(3);
  for (int i = 0; i < 300; ++i) {
    SignedThreadState t = random_thread_state(rng, rng.below(2) != 0);
    std::vector<uint8_t> w = enc(t);
    ASSERT_FALSE(w.empty());
    EXPECT_EQ(w[1], 0x02);
    SignedThreadState d;
    ASSERT_EQ(dec_thread(w, d), Status::Ok) << to_hex(w);
    expect_signed_thread_eq(t, d);
    EXPECT_EQ(enc(d), w);
  }
}

TEST(CodecRoundTrip, ChannelUpdateEveryReason) {
  Rng rng(4);
  for (UpdateReason r : kReasons) {
    for (int i = 0; i < 60; ++i) {
      ChannelUpdate x = random_update(rng, r);
      std::vector<uint8_t> w = enc(x);
      ASSERT_FALSE(w.empty()) << "reason " << int(r);
      EXPECT_EQ(w[1], 0x03);
      EXPECT_EQ(w[2], static_cast<uint8_t>(r));
      ChannelUpdate d;
      ASSERT_EQ(dec_update(w, d), Status::Ok) << "reason " << int(r) << " " << to_hex(w);
      expect_update_eq(x, d);
      EXPECT_EQ(enc(d), w);
    }
  }
}

TEST(CodecRoundTrip, ThreadUpdate) {
  Rng rng(5);
  for (int i = 0; i < 300; ++i) {
    ThreadUpdate t = random_thread_update(rng);
    std::vector<uint8_t> w = enc(t);
    ASSERT_FALSE(w.empty());
    EXPECT_EQ(w[1], 0x04);
    ThreadUpdate d;
    ASSERT_EQ(dec_tupdate(w, d), Status::Ok) << to_hex(w);
    expect_thread_update_eq(t, d);
    EXPECT_EQ(enc(d), w);
  }
}

TEST(CodecRoundTrip, ThreadPayment) {
  // Kind 0x06: the ThreadState body with sigA required (docs/wire-format.md).
  Rng rng(6);
  for (int i = 0; i < 300; ++i) {
    SignedThreadState t = random_thread_state(rng, true);
    std::vector<uint8_t> w(kMaxThreadStateWire);
    size_t n = 0;
    ASSERT_EQ(encode_thread_payment(t, w.data(), w.size(), &n), Status::Ok);
    w.resize(n);
    EXPECT_EQ(w[1], 0x06);
    // The same bytes as the ThreadState message but for the kind byte.
    std::vector<uint8_t> as_state = enc(t);
    as_state[1] = 0x06;
    EXPECT_EQ(as_state, w);
    SignedThreadState d;
    ASSERT_EQ(decode_thread_payment(w.data(), w.size(), d), Status::Ok) << to_hex(w);
    expect_signed_thread_eq(t, d);
    WireKind k;
    ASSERT_EQ(wire_peek_kind(w.data(), w.size(), k), Status::Ok);
    EXPECT_EQ(k, WireKind::ThreadPayment);
    // Neither decoder of the other thread messages takes it, nor it theirs.
    SignedThreadState other;
    EXPECT_EQ(decode_thread_state(w.data(), w.size(), other), Status::BadKind);
    ThreadUpdate tu;
    EXPECT_EQ(decode_thread_update(w.data(), w.size(), tu), Status::BadKind);
    const std::vector<uint8_t> st = enc(t);
    EXPECT_EQ(decode_thread_payment(st.data(), st.size(), other), Status::BadKind);
  }
  // Without sigA: encode refuses, and so does decode (flag byte 0).
  SignedThreadState t = random_thread_state(rng, false);
  std::vector<uint8_t> w(kMaxThreadStateWire);
  size_t n = 0;
  EXPECT_EQ(encode_thread_payment(t, w.data(), w.size(), &n), Status::BadArgs);
  std::vector<uint8_t> unsigned_state = enc(t);
  unsigned_state[1] = 0x06;
  SignedThreadState d;
  EXPECT_EQ(decode_thread_payment(unsigned_state.data(), unsigned_state.size(), d), Status::BadArgs);
}

TEST(CodecRoundTrip, PeekKind) {
  for (const auto& m : valid_corpus()) {
    WireKind k;
    ASSERT_EQ(wire_peek_kind(m.data(), m.size(), k), Status::Ok);
    EXPECT_EQ(static_cast<int>(k), m[1]);
  }
  const uint8_t one[1] = {1};
  WireKind k;
  EXPECT_EQ(wire_peek_kind(one, 1, k), Status::Truncated);
  EXPECT_EQ(wire_peek_kind(one, 0, k), Status::Truncated);
  const uint8_t badv[2] = {2, 1}, badk[2] = {1, 7}, badk0[2] = {1, 0};
  const uint8_t badk15[2] = {1, 0x0F}, badk20[2] = {1, 0x14};
  EXPECT_EQ(wire_peek_kind(badv, 2, k), Status::BadVersion);
  EXPECT_EQ(wire_peek_kind(badk, 2, k), Status::BadKind);
  EXPECT_EQ(wire_peek_kind(badk15, 2, k), Status::BadKind);
  EXPECT_EQ(wire_peek_kind(badk20, 2, k), Status::BadKind);
  EXPECT_EQ(wire_peek_kind(badk0, 2, k), Status::BadKind);
}

// ================================================================== size targets

// codec.hpp: "Upper bounds on encoded sizes, for sizing buffers" — a buffer of
// kMaxWireMessage bytes must hold any message.
TEST(CodecBounds, MaxWireMessageCoversEveryKind) {
  EXPECT_GE(kMaxWireMessage, kMaxChannelStateWire);
  EXPECT_GE(kMaxWireMessage, kMaxThreadStateWire);
  EXPECT_GE(kMaxWireMessage, kMaxChannelUpdateWire);
  EXPECT_GE(kMaxWireMessage, kMaxThreadUpdateWire);
}

TEST(CodecBounds, ThreadStateAndUpdateMaximaFitTheirBounds) {
  Rng rng(21);
  SignedThreadState t = random_thread_state(rng, true);
  t.state.threadId = t.state.txCount = kMaxCounter;
  t.state.balanceWeiSender = t.state.balanceWeiReceiver = U256::max();
  t.state.balanceTokenSender = t.state.balanceTokenReceiver = U256::max();
  EXPECT_LE(enc(t).size(), kMaxThreadStateWire);
  ChannelUpdate x = random_update(rng, UpdateReason::OpenThread);
  x.txCountGlobal = kMaxCounter;
  x.thread.thread = t;
  EXPECT_LE(enc(x).size(), kMaxChannelUpdateWire);
  ThreadUpdate tu = random_thread_update(rng);
  tu.threadId = tu.txCount = kMaxCounter;
  tu.amountWei = tu.amountToken = U256::max();
  EXPECT_EQ(enc(tu).size(), kMaxThreadUpdateWire);
}

TEST(CodecSize, PaymentUpdateAtMost80Bytes) {
  std::vector<uint8_t> w = enc(payment_example());
  RecordProperty("payment_update_bytes", static_cast<int>(w.size()));
  std::printf("payment update request (1000 wei, txCountGlobal 1000): %zu bytes\n", w.size());
  EXPECT_LE(w.size(), 80u);
  EXPECT_EQ(w.size(), 75u) << "docs/wire-format.md: 2 + 1 + 2 + 1 + 3 + 1 + 65";
}

TEST(CodecSize, FullDoubleSignedStateAtMost300Bytes) {
  std::vector<uint8_t> w = enc(full_state_example());
  RecordProperty("full_state_bytes", static_cast<int>(w.size()));
  std::printf("full double-signed channel state (small balances, no threads): %zu bytes\n", w.size());
  EXPECT_LE(w.size(), 300u);
  // 3 + 20 + 20 + 4*4 + 8*1 + (2 + 1 + 1 + 1) + 2*65
  EXPECT_EQ(w.size(), 202u);
}

TEST(CodecSize, ThreadUpdateLayoutByHand) {
  ThreadUpdate t = thread_update_example();
  std::vector<uint8_t> w = enc(t);
  ASSERT_EQ(w.size(), 93u);
  std::vector<uint8_t> want = {0x01, 0x04};
  want.insert(want.end(), t.sender.bytes, t.sender.bytes + 20);
  for (uint8_t b : std::initializer_list<uint8_t>{0x05, 0x07, 0x02, 0x03, 0xe8, 0x00}) want.push_back(b);
  want.insert(want.end(), t.sig.r, t.sig.r + 32);
  want.insert(want.end(), t.sig.s, t.sig.s + 32);
  want.push_back(t.sig.v);
  EXPECT_EQ(to_hex(w), to_hex(want));
}

TEST(CodecSize, VarintEncodingLengths) {
  // threadId in a thread update sits at offset 22: its length shows the varint width.
  struct Case {
    uint64_t v;
    size_t bytes;
  } cases[] = {{0, 1}, {127, 1}, {128, 2}, {16383, 2}, {16384, 3}, {kMaxCounter, 8}};
  for (const Case& c : cases) {
    ThreadUpdate t = thread_update_example();
    t.threadId = c.v;
    EXPECT_EQ(enc(t).size(), 93u - 1u + c.bytes) << c.v;
  }
  ThreadUpdate t = thread_update_example();
  t.threadId = 300;  // LEB128: ac 02
  std::vector<uint8_t> w = enc(t);
  EXPECT_EQ(w[22], 0xac);
  EXPECT_EQ(w[23], 0x02);
}

// ================================================================== refusals

TEST(CodecRefuse, TruncationAtEveryOffsetIsTruncated) {
  for (const auto& m : valid_corpus()) {
    int which = decoder_for(m);
    for (size_t k = 0; k < m.size(); ++k) {
      std::vector<uint8_t> cut(m.begin(), m.begin() + static_cast<long>(k));
      Status st = decode_any(which, cut, nullptr);
      ASSERT_EQ(st, Status::Truncated) << "kind " << int(m[1]) << " cut at " << k << " of " << m.size();
    }
  }
}

TEST(CodecRefuse, TrailingBytes) {
  for (const auto& m : valid_corpus()) {
    for (uint8_t extra : std::initializer_list<uint8_t>{0x00, 0x01, 0xff}) {
      std::vector<uint8_t> x = m;
      x.push_back(extra);
      EXPECT_EQ(decode_any(decoder_for(m), x, nullptr), Status::TrailingBytes) << "kind " << int(m[1]);
    }
  }
}

TEST(CodecRefuse, BadVersion) {
  for (const auto& m : valid_corpus()) {
    for (uint8_t v : std::initializer_list<uint8_t>{0x00, 0x02, 0xff}) {
      std::vector<uint8_t> x = m;
      x[0] = v;
      EXPECT_EQ(decode_any(decoder_for(m), x, nullptr), Status::BadVersion);
    }
  }
}

TEST(CodecRefuse, BadKind) {
  for (const auto& m : valid_corpus()) {
    for (uint8_t k : std::initializer_list<uint8_t>{0, 1, 2, 3, 4, 5, 0xff}) {
      if (k == m[1]) continue;
      std::vector<uint8_t> x = m;
      x[1] = k;
      EXPECT_EQ(decode_any(decoder_for(m), x, nullptr), Status::BadKind) << int(m[1]) << " -> " << int(k);
    }
  }
}

TEST(CodecRefuse, VarintWithRedundantContinuation) {
  std::vector<uint8_t> m = enc(thread_update_example());
  ASSERT_EQ(m[22], 0x05);
  ThreadUpdate d;
  EXPECT_EQ(dec_tupdate(splice(m, 22, 1, {0x85, 0x00}), d), Status::NonCanonical);
  EXPECT_EQ(dec_tupdate(splice(m, 22, 1, {0x80, 0x00}), d), Status::NonCanonical);  // zero as 2 bytes
  EXPECT_EQ(dec_tupdate(splice(m, 22, 1, {0x85, 0x80, 0x00}), d), Status::NonCanonical);
  ASSERT_EQ(dec_tupdate(splice(m, 22, 1, {0x85, 0x01}), d), Status::Ok);  // 133: canonical
  EXPECT_EQ(d.threadId, 133u);
  // the txCount varint too (offset 23)
  EXPECT_EQ(dec_tupdate(splice(m, 23, 1, {0x87, 0x00}), d), Status::NonCanonical);
}

TEST(CodecRefuse, CounterAboveMaxIsOutOfBounds) {
  std::vector<uint8_t> m = enc(thread_update_example());
  ThreadUpdate d;
  // 2^53 - 1: seven 0xff groups and 0x0f -> Ok; 2^53: 80*7 then 0x10 -> OutOfBounds
  std::vector<uint8_t> max = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f};
  ASSERT_EQ(dec_tupdate(splice(m, 22, 1, max), d), Status::Ok);
  EXPECT_EQ(d.threadId, kMaxCounter);
  EXPECT_EQ(dec_tupdate(splice(m, 22, 1, {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10}), d),
            Status::OutOfBounds);
  EXPECT_EQ(dec_tupdate(splice(m, 22, 1, {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}), d),
            Status::OutOfBounds);
  Status nine = dec_tupdate(splice(m, 22, 1, {0x81, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}), d);
  EXPECT_TRUE(nine == Status::OutOfBounds || nine == Status::NonCanonical) << status_name(nine);
  // Encoders refuse out-of-bound counters.
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  ThreadUpdate t = thread_update_example();
  t.txCount = kMaxCounter + 1;
  EXPECT_EQ(encode_thread_update(t, b.data(), b.size(), &n), Status::OutOfBounds);
  SignedChannelState c = full_state_example();
  c.state.timeout = kMaxCounter + 1;
  EXPECT_EQ(encode_channel_state(c, b.data(), b.size(), &n), Status::OutOfBounds);
  c = full_state_example();
  c.state.txCountGlobal = ~0ULL;
  EXPECT_EQ(encode_channel_state(c, b.data(), b.size(), &n), Status::OutOfBounds);
  SignedThreadState ts = thread_example();
  ts.state.threadId = kMaxCounter + 1;
  EXPECT_EQ(encode_thread_state(ts, b.data(), b.size(), &n), Status::OutOfBounds);
  ChannelUpdate x = payment_example();
  x.txCountGlobal = kMaxCounter + 1;
  EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::OutOfBounds);
}

TEST(CodecRefuse, NonCanonicalAmounts) {
  std::vector<uint8_t> m = enc(thread_update_example());
  ASSERT_EQ(m[24], 0x02);  // amountWei = 02 03 e8, amountToken = 00 at 27
  ASSERT_EQ(m[27], 0x00);
  ThreadUpdate d;
  EXPECT_EQ(dec_tupdate(splice(m, 24, 3, {0x03, 0x00, 0x03, 0xe8}), d), Status::NonCanonical);  // leading zero
  EXPECT_EQ(dec_tupdate(splice(m, 27, 1, {0x01, 0x00}), d), Status::NonCanonical);  // zero as one 0x00 byte
  std::vector<uint8_t> big = {0x21};
  big.insert(big.end(), 33, 0x01);
  EXPECT_EQ(dec_tupdate(splice(m, 24, 3, big), d), Status::OutOfBounds);  // 33 bytes
  EXPECT_EQ(dec_tupdate(splice(m, 24, 3, {0xff}), d), Status::OutOfBounds);
  std::vector<uint8_t> full = {0x20};
  full.insert(full.end(), 32, 0xff);
  ASSERT_EQ(dec_tupdate(splice(m, 24, 3, full), d), Status::Ok);
  EXPECT_EQ(d.amountWei, U256::max());
  std::vector<uint8_t> padded32 = {0x20};
  padded32.insert(padded32.end(), 31, 0x00);
  padded32.push_back(0x05);
  EXPECT_EQ(dec_tupdate(splice(m, 24, 3, padded32), d), Status::NonCanonical);
}

TEST(CodecRefuse, UnknownFlagBits) {
  std::vector<uint8_t> cs = enc(full_state_example());
  ASSERT_EQ(cs[2], 0x03);  // both sigs, recipient = user, zero root
  SignedChannelState c;
  for (uint8_t bit : std::initializer_list<uint8_t>{0x10, 0x20, 0x40, 0x80}) {
    std::vector<uint8_t> x = cs;
    x[2] = static_cast<uint8_t>(x[2] | bit);
    EXPECT_EQ(dec_channel(x, c), Status::NonCanonical) << int(bit);
  }
  std::vector<uint8_t> ts = enc(thread_example());
  ASSERT_EQ(ts[2], 0x01);
  SignedThreadState t;
  for (uint8_t bit : std::initializer_list<uint8_t>{0x02, 0x04, 0x80}) {
    std::vector<uint8_t> x = ts;
    x[2] = static_cast<uint8_t>(x[2] | bit);
    EXPECT_EQ(dec_thread(x, t), Status::NonCanonical) << int(bit);
  }
}

TEST(CodecRefuse, ExplicitDefaultsAreNonCanonical) {
  Rng rng(9);
  SignedChannelState c = full_state_example();
  c.state.recipient = pick_address(rng);
  c.state.threadRoot = pick_hash(rng);
  std::vector<uint8_t> w = enc(c);
  ASSERT_EQ(w[2], 0x0f);
  SignedChannelState d;
  ASSERT_EQ(dec_channel(w, d), Status::Ok);
  // recipient (offset 43) overwritten with the user (offset 23)
  std::vector<uint8_t> x = w;
  std::copy(w.begin() + 23, w.begin() + 43, x.begin() + 43);
  EXPECT_EQ(dec_channel(x, d), Status::NonCanonical);
  // threadRoot zeroed where it sits
  auto at = std::search(w.begin(), w.end(), c.state.threadRoot.bytes, c.state.threadRoot.bytes + 32);
  ASSERT_NE(at, w.end());
  x = w;
  std::fill(x.begin() + (at - w.begin()), x.begin() + (at - w.begin()) + 32, 0);
  EXPECT_EQ(dec_channel(x, d), Status::NonCanonical);
}

TEST(CodecRefuse, HighSSignatureInStateAndUpdates) {
  Rng rng(10);
  U256 n;
  std::vector<uint8_t> nb = picopay_test::from_hex("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141");
  ASSERT_EQ(u256_from_be(nb.data(), 32, n), Status::Ok);
  auto twin = [&](const Signature& s) {
    U256 sv, t;
    EXPECT_EQ(u256_from_be(s.s, 32, sv), Status::Ok);
    EXPECT_EQ(u256_sub(n, sv, t), Status::Ok);
    Signature o = s;
    u256_to_be32(t, o.s);
    o.v = s.v == 27 ? 28 : 27;
    return o;
  };
  // Channel state: sigUser is at len-130, sigHub at len-65. Patch bytes in place.
  SignedChannelState c = full_state_example();
  std::vector<uint8_t> w = enc(c);
  for (size_t off : {w.size() - 130, w.size() - 65}) {
    Signature s;
    std::memcpy(s.r, &w[off], 32);
    std::memcpy(s.s, &w[off + 32], 32);
    s.v = w[off + 64];
    Signature hs = twin(s);
    std::vector<uint8_t> x = w;
    std::memcpy(&x[off + 32], hs.s, 32);
    x[off + 64] = hs.v;
    SignedChannelState d;
    EXPECT_EQ(dec_channel(x, d), Status::HighS) << "sig at " << off;
  }
  // Each message's trailing signature
  for (const auto& m : valid_corpus()) {
    if (m[1] == 0x02 && m[2] == 0x00) continue;  // unsigned thread state
    if (m[1] == 0x01 && (m[2] & 0x03) == 0) continue;
    size_t off = m.size() - 65;
    Signature s;
    std::memcpy(s.r, &m[off], 32);
    std::memcpy(s.s, &m[off + 32], 32);
    s.v = m[off + 64];
    Signature hs = twin(s);
    std::vector<uint8_t> x = m;
    std::memcpy(&x[off + 32], hs.s, 32);
    x[off + 64] = hs.v;
    EXPECT_EQ(decode_any(decoder_for(m), x, nullptr), Status::HighS) << "kind " << int(m[1]);
  }
  // Encoders need not re-check s (the signer never produces high S), so no encode case.
  (void)rng;
}

TEST(CodecRefuse, RecoveryByteNot27Or28) {
  for (const auto& m : valid_corpus()) {
    if (m[1] == 0x02 && m[2] == 0x00) continue;
    if (m[1] == 0x01 && (m[2] & 0x03) == 0) continue;
    for (uint8_t v : std::initializer_list<uint8_t>{0, 1, 26, 29, 255}) {
      std::vector<uint8_t> x = m;
      x.back() = v;
      EXPECT_EQ(decode_any(decoder_for(m), x, nullptr), Status::BadRecoveryId) << "kind " << int(m[1]) << " v " << int(v);
    }
  }
  // Encoders refuse a present signature with v not 27/28.
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  SignedChannelState c = full_state_example();
  c.sigHub.v = 1;
  EXPECT_EQ(encode_channel_state(c, b.data(), b.size(), &n), Status::BadRecoveryId);
  c = full_state_example();
  c.hasSigUser = false;
  c.sigUser.v = 0;  // absent: ignored
  EXPECT_EQ(encode_channel_state(c, b.data(), b.size(), &n), Status::Ok);
  ChannelUpdate x = payment_example();
  x.sig.v = 0;
  EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::BadRecoveryId);
  ThreadUpdate t = thread_update_example();
  t.sig.v = 29;
  EXPECT_EQ(encode_thread_update(t, b.data(), b.size(), &n), Status::BadRecoveryId);
  SignedThreadState ts = thread_example();
  ts.sigA.v = 0;
  EXPECT_EQ(encode_thread_state(ts, b.data(), b.size(), &n), Status::BadRecoveryId);
}

TEST(CodecRefuse, BadReasonAndBadParty) {
  std::vector<uint8_t> m = enc(payment_example());
  ChannelUpdate d;
  for (uint8_t r : std::initializer_list<uint8_t>{0, 10, 0xff}) {
    std::vector<uint8_t> x = m;
    x[2] = r;
    EXPECT_EQ(dec_update(x, d), Status::BadReason) << int(r);
  }
  // payment: | 01 03 | 01 | e8 07 | party | ...
  ASSERT_EQ(m[5], 0x00);
  for (uint8_t p : std::initializer_list<uint8_t>{2, 0x80, 0xff}) {
    std::vector<uint8_t> x = m;
    x[5] = p;
    EXPECT_EQ(dec_update(x, d), Status::BadArgs) << int(p);
  }
  std::vector<uint8_t> b(kBuf);
  size_t n = 0;
  ChannelUpdate x = payment_example();
  x.payment.recipient = static_cast<Party>(2);
  EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::BadArgs);
  x = payment_example();
  x.reason = static_cast<UpdateReason>(0);
  EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::BadReason);
  x.reason = static_cast<UpdateReason>(10);
  EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::BadReason);
}

TEST(CodecRefuse, ThreadUpdateRequestWithoutSigA) {
  Rng rng(12);
  for (UpdateReason r : {UpdateReason::OpenThread, UpdateReason::CloseThread}) {
    ChannelUpdate x = random_update(rng, r);
    std::vector<uint8_t> w = enc(x);
    // body flags byte follows | 01 03 | reason | varint txCountGlobal |
    size_t flags_at = 3;
    while (w[flags_at] & 0x80) ++flags_at;
    ++flags_at;
    ASSERT_EQ(w[flags_at], 0x01);
    std::vector<uint8_t> y = w;
    y[flags_at] = 0x00;
    y.erase(y.end() - 130, y.end() - 65);  // drop sigA, keep the update's own sig
    ChannelUpdate d;
    EXPECT_EQ(dec_update(y, d), Status::BadArgs) << int(r);
    x.thread.thread.hasSigA = false;
    std::vector<uint8_t> b(kBuf);
    size_t n = 0;
    EXPECT_EQ(encode_channel_update(x, b.data(), b.size(), &n), Status::BadArgs) << int(r);
  }
}

TEST(CodecBuffer, BufferTooSmallReportsNeededSize) {
  for (const auto& m : valid_corpus()) {
    std::vector<uint8_t> b(m.size());
    int which = decoder_for(m);
    // decode then re-encode into buffers of every size below the needed one
    std::vector<uint8_t> re;
    ASSERT_EQ(decode_any(which, m, &re), Status::Ok);
    for (size_t cap : {size_t{0}, size_t{1}, m.size() / 2, m.size() - 1}) {
      size_t n = 0;
      Status st = Status::Ok;
      switch (which) {
        case 0: {
          SignedChannelState v;
          ASSERT_EQ(dec_channel(m, v), Status::Ok);
          st = encode_channel_state(v, b.data(), cap, &n);
          break;
        }
        case 1: {
          SignedThreadState v;
          ASSERT_EQ(dec_thread(m, v), Status::Ok);
          st = encode_thread_state(v, b.data(), cap, &n);
          break;
        }
        case 2: {
          ChannelUpdate v;
          ASSERT_EQ(dec_update(m, v), Status::Ok);
          st = encode_channel_update(v, b.data(), cap, &n);
          break;
        }
        default: {
          ThreadUpdate v;
          ASSERT_EQ(dec_tupdate(m, v), Status::Ok);
          st = encode_thread_update(v, b.data(), cap, &n);
          break;
        }
      }
      EXPECT_EQ(st, Status::BufferTooSmall) << "kind " << int(m[1]) << " cap " << cap;
      EXPECT_EQ(n, m.size()) << "kind " << int(m[1]) << " cap " << cap;
    }
  }
}

// ================================================================== fuzz

TEST(CodecFuzz, RandomBytesNeverCrashAndSuccessIsCanonical) {
  Rng rng(0xF022);
  int ok = 0;
  for (int i = 0; i < 4000; ++i) {
    size_t len = static_cast<size_t>(rng.below(300));
    std::vector<uint8_t> in = rng.bytes(len);
    int which = static_cast<int>(rng.below(4));
    if (len >= 2 && rng.below(4) != 0) {  // mostly a valid envelope so bodies get exercised
      in[0] = kWireVersion;
      in[1] = static_cast<uint8_t>(which + 1);
      if (which == 2 && len >= 3) in[2] = static_cast<uint8_t>(1 + rng.below(9));
    }
    std::vector<uint8_t> re;
    Status st = decode_any(which, in, &re);
    if (st == Status::Ok) {
      ++ok;
      ASSERT_EQ(to_hex(re), to_hex(in)) << "decoded but re-encoded differently";
    }
  }
  RecordProperty("random_inputs_decoded", ok);
}

TEST(CodecFuzz, SingleByteMutationsOfValidMessages) {
  Rng rng(0xBEEF);
  std::vector<std::vector<uint8_t>> corpus = valid_corpus();
  int ok = 0;
  for (int i = 0; i < 6000; ++i) {
    const std::vector<uint8_t>& m = corpus[static_cast<size_t>(rng.below(corpus.size()))];
    std::vector<uint8_t> x = m;
    size_t at = static_cast<size_t>(rng.below(x.size()));
    switch (rng.below(4)) {
      case 0: x[at] = rng.byte(); break;
      case 1: x[at] = static_cast<uint8_t>(x[at] ^ (1u << rng.below(8))); break;
      case 2: x.erase(x.begin() + static_cast<long>(at)); break;
      default: x.insert(x.begin() + static_cast<long>(at), rng.byte()); break;
    }
    std::vector<uint8_t> re;
    Status st = decode_any(decoder_for(m), x, &re);
    if (st == Status::Ok) {
      ++ok;
      ASSERT_EQ(to_hex(re), to_hex(x)) << "mutant decoded but re-encoded differently; original " << to_hex(m);
    }
  }
  RecordProperty("mutants_decoded", ok);
  EXPECT_GT(ok, 0);  // signature/address bytes are free: some mutants must decode
}
