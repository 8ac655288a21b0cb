// The Reply codec (Ack / Nack / Sync / RequestNack) and the HubRequest codec with its
// signature (codec.hpp, docs/wire-format.md): round trips, the byte layout agent/mqtt
// has used since v1 (built by hand here), refusal of every malformed class,
// BufferTooSmall, and forged / altered hub requests.
#include <gtest/gtest.h>

#include <cstring>
#include <vector>

#include "picopay/codec.hpp"
#include "picopay/keccak.hpp"
#include "picopay/signer.hpp"
#include "test_util.hpp"

using namespace picopay;
using picopay_test::Rng;
using picopay_test::to_hex;
using picopay_test::u;

namespace {

const Signer& signer() {
  static Signer s;
  if (!s.ready() && s.init() != Status::Ok) std::abort();
  return s;
}

PrivateKey key_fill(uint8_t b) {
  PrivateKey k;
  std::memset(k.bytes, b, 32);
  return k;
}

Address addr_of(const PrivateKey& k) {
  Address a;
  if (signer().address_of(k, a) != Status::Ok) std::abort();
  return a;
}

Signature sig_over(uint8_t seed) {
  Hash32 h;
  std::memset(h.bytes, seed, 32);
  Signature s;
  if (signer().sign_eth(key_fill(0x11), h, s) != Status::Ok) std::abort();
  return s;
}

SignedChannelState some_state() {
  SignedChannelState c;
  std::memset(&c, 0, sizeof c);
  c.state = channel_state_zero();
  c.state.contractAddress = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
  c.state.user = addr_of(key_fill(0x22));
  c.state.recipient = c.state.user;
  c.state.balanceWeiHub = u(1000);
  c.state.balanceWeiUser = u(77);
  c.state.txCountGlobal = 300;
  c.state.txCountChain = 2;
  c.hasSigUser = c.hasSigHub = true;
  c.sigUser = sig_over(1);
  c.sigHub = sig_over(2);
  return c;
}

std::vector<uint8_t> enc(const Reply& r) {
  uint8_t buf[kMaxReplyWire];
  size_t n = 0;
  EXPECT_EQ(encode_reply(r, buf, sizeof buf, &n), Status::Ok);
  return std::vector<uint8_t>(buf, buf + n);
}

std::vector<uint8_t> enc_state(const SignedChannelState& s) {
  uint8_t buf[kMaxChannelStateWire];
  size_t n = 0;
  EXPECT_EQ(encode_channel_state(s, buf, sizeof buf, &n), Status::Ok);
  return std::vector<uint8_t>(buf, buf + n);
}

std::vector<uint8_t> sig_bytes(const Signature& s) {
  uint8_t b[65];
  std::memcpy(b, s.r, 32);
  std::memcpy(b + 32, s.s, 32);
  b[64] = s.v;
  return std::vector<uint8_t>(b, b + 65);
}

Status dec(const std::vector<uint8_t>& b, Reply& r) { return decode_reply(b.data(), b.size(), r); }

TEST(ReplyCodec, AckLayoutByHand) {
  Reply r = reply_make(ReplyKind::Ack);
  r.txCountGlobal = 300;  // varint 0xac 0x02
  r.sig = sig_over(3);
  std::vector<uint8_t> want = {0x01, 0x10, 0xac, 0x02};
  const auto s = sig_bytes(r.sig);
  want.insert(want.end(), s.begin(), s.end());
  EXPECT_EQ(to_hex(enc(r)), to_hex(want));
  Reply d;
  ASSERT_EQ(dec(want, d), Status::Ok);
  EXPECT_EQ(d.kind, ReplyKind::Ack);
  EXPECT_EQ(d.txCountGlobal, 300u);
  EXPECT_EQ(d.sig, r.sig);
}

TEST(ReplyCodec, NackSyncRequestNackLayoutByHand) {
  const SignedChannelState st = some_state();
  const auto state = enc_state(st);
  for (ReplyKind k : {ReplyKind::Nack, ReplyKind::Sync, ReplyKind::RequestNack}) {
    Reply r = reply_make(k);
    r.txCountGlobal = 5;
    r.status = Status::NotRequested;
    r.state = st;
    std::vector<uint8_t> want = {0x01, static_cast<uint8_t>(k), 0x05};
    if (k != ReplyKind::Sync) want.push_back(34);  // NotRequested's pinned number
    want.insert(want.end(), state.begin(), state.end());
    EXPECT_EQ(to_hex(enc(r)), to_hex(want)) << int(k);
    Reply d;
    ASSERT_EQ(dec(want, d), Status::Ok);
    EXPECT_EQ(d.kind, k);
    EXPECT_EQ(d.txCountGlobal, 5u);
    EXPECT_EQ(d.state.state, st.state);
    EXPECT_EQ(d.state.sigHub, st.sigHub);
    if (k != ReplyKind::Sync) {
      EXPECT_EQ(d.status, Status::NotRequested);
    }
  }
}

TEST(ReplyCodec, GenesisStateWithoutSignatures) {
  Reply r = reply_make(ReplyKind::Sync);
  r.state = some_state();
  r.state.hasSigHub = r.state.hasSigUser = false;
  r.state.state.txCountGlobal = 0;
  r.txCountGlobal = 0;
  Reply d;
  ASSERT_EQ(dec(enc(r), d), Status::Ok);
  EXPECT_FALSE(d.state.hasSigHub);
  EXPECT_EQ(d.state.state, r.state.state);
}

TEST(ReplyCodec, RefusesMalformed) {
  Reply ack = reply_make(ReplyKind::Ack);
  ack.txCountGlobal = 9;
  ack.sig = sig_over(4);
  Reply nack = reply_make(ReplyKind::Nack);
  nack.txCountGlobal = 9;
  nack.status = Status::BadTxCount;
  nack.state = some_state();
  for (const Reply& r : {ack, nack}) {
    const auto good = enc(r);
    Reply d;
    for (size_t n = 0; n < good.size(); ++n) {
      std::vector<uint8_t> cut(good.begin(), good.begin() + static_cast<long>(n));
      EXPECT_EQ(dec(cut, d), Status::Truncated) << "length " << n;
    }
    auto longer = good;
    longer.push_back(0);
    EXPECT_EQ(dec(longer, d), Status::TrailingBytes);
    auto v = good;
    v[0] = 2;
    EXPECT_EQ(dec(v, d), Status::BadVersion);
    for (int k : {0x00, 0x01, 0x03, 0x05, 0x0F, 0x14, 0xFF}) {
      v = good;
      v[1] = static_cast<uint8_t>(k);
      EXPECT_EQ(dec(v, d), Status::BadKind) << int(k);
    }
    v = good;  // a varint with a redundant continuation group
    v.insert(v.begin() + 3, 0x00);
    v[2] |= 0x80;
    EXPECT_EQ(dec(v, d), Status::NonCanonical);
  }
  // Ack: v not 27/28, high S.
  auto a = enc(ack);
  a.back() = 29;
  Reply d;
  EXPECT_EQ(dec(a, d), Status::BadRecoveryId);
  a = enc(ack);
  std::memset(a.data() + 3 + 32, 0xFF, 32);
  EXPECT_EQ(dec(a, d), Status::HighS);
  // Nack: status Ok or beyond the last Status number.
  for (uint8_t s : {uint8_t{0}, kStatusCount, uint8_t{0xFF}}) {
    auto n = enc(nack);
    n[3] = s;
    EXPECT_EQ(dec(n, d), Status::BadArgs) << int(s);
  }
  // The highest pinned number is accepted.
  auto n = enc(nack);
  n[3] = kStatusCount - 1;
  EXPECT_EQ(dec(n, d), Status::Ok);
  // Encode refuses what it could not decode.
  Reply bad = nack;
  bad.status = Status::Ok;
  uint8_t buf[kMaxReplyWire];
  size_t w = 0;
  EXPECT_EQ(encode_reply(bad, buf, sizeof buf, &w), Status::BadArgs);
  bad.status = static_cast<Status>(kStatusCount);
  EXPECT_EQ(encode_reply(bad, buf, sizeof buf, &w), Status::BadArgs);
  bad = ack;
  bad.sig.v = 1;
  EXPECT_EQ(encode_reply(bad, buf, sizeof buf, &w), Status::BadRecoveryId);
  bad = ack;
  bad.txCountGlobal = kMaxCounter + 1;
  EXPECT_EQ(encode_reply(bad, buf, sizeof buf, &w), Status::OutOfBounds);
  bad.kind = static_cast<ReplyKind>(0x20);
  EXPECT_EQ(encode_reply(bad, buf, sizeof buf, &w), Status::BadKind);
}

TEST(ReplyCodec, BufferTooSmallReportsNeededSize) {
  Reply r = reply_make(ReplyKind::Nack);
  r.txCountGlobal = 1;
  r.status = Status::Busy;
  r.state = some_state();
  const auto good = enc(r);
  for (size_t cap = 0; cap < good.size(); ++cap) {
    std::vector<uint8_t> buf(cap + 1);
    size_t need = 0;
    EXPECT_EQ(encode_reply(r, cap ? buf.data() : nullptr, cap, &need), Status::BufferTooSmall) << cap;
    EXPECT_EQ(need, good.size()) << cap;
  }
  EXPECT_LE(good.size(), kMaxReplyWire);
}

TEST(ReplyCodec, FuzzNeverCrashesAndSuccessReencodes) {
  Rng rng(77);
  Reply base = reply_make(ReplyKind::Nack);
  base.txCountGlobal = 3;
  base.status = Status::Underflow;
  base.state = some_state();
  const auto good = enc(base);
  for (int i = 0; i < 20000; ++i) {
    auto m = good;
    m[rng.below(m.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
    Reply d;
    if (dec(m, d) == Status::Ok) {
      EXPECT_EQ(to_hex(enc(d)), to_hex(m));
    }
  }
}

// ---------------------------------------------------------------- HubRequest

HubRequest collateral_request(const Address& user) {
  HubRequest q;
  std::memset(&q, 0, sizeof q);
  q.contractAddress = picopay_test::addr("0x7d73424a8256c0b2ba245e5d5a3de8820e45f390");
  q.user = user;
  q.requestId = 42;
  q.update = channel_update_make(UpdateReason::ProposePendingDeposit);
  q.update.deposit.depositWeiHub = u(5000);
  q.update.deposit.timeout = 1900000000;
  return q;
}

std::vector<uint8_t> enc(const HubRequest& q) {
  uint8_t buf[kMaxHubRequestWire];
  size_t n = 0;
  EXPECT_EQ(encode_hub_request(q, buf, sizeof buf, &n), Status::Ok);
  return std::vector<uint8_t>(buf, buf + n);
}

TEST(HubRequestCodec, LayoutSignAndVerify) {
  const PrivateKey hubKey = key_fill(0x33);
  const Address hub = addr_of(hubKey);
  HubRequest q = collateral_request(addr_of(key_fill(0x22)));
  ASSERT_EQ(hub_request_sign(signer(), hubKey, q), Status::Ok);
  const auto w = enc(q);
  // | 01 05 | contract | user | varint 42 | reason 3 | 4 amounts | varint timeout | sig |
  ASSERT_GE(w.size(), 2u + 40 + 1 + 1);
  EXPECT_EQ(w[0], 0x01);
  EXPECT_EQ(w[1], 0x05);
  EXPECT_EQ(0, std::memcmp(w.data() + 2, q.contractAddress.bytes, 20));
  EXPECT_EQ(0, std::memcmp(w.data() + 22, q.user.bytes, 20));
  EXPECT_EQ(w[42], 42);
  EXPECT_EQ(w[43], 3);
  EXPECT_EQ(w[44], 2);  // depositWeiHub 5000 = 0x1388: 2 bytes
  HubRequest d;
  ASSERT_EQ(decode_hub_request(w.data(), w.size(), d), Status::Ok);
  EXPECT_EQ(to_hex(enc(d)), to_hex(w));
  EXPECT_EQ(hub_request_verify(signer(), d, hub), Status::Ok);
  // The hash covers the bytes before the signature.
  Hash32 h;
  ASSERT_EQ(hub_request_hash(d, h), Status::Ok);
  Hash32 want;
  keccak256(w.data(), w.size() - 65, want.bytes);
  EXPECT_EQ(h, want);
  WireKind k;
  ASSERT_EQ(wire_peek_kind(w.data(), w.size(), k), Status::Ok);
  EXPECT_EQ(k, WireKind::HubRequest);
}

TEST(HubRequestCodec, ForgedOrAlteredRequestsFailVerification) {
  const PrivateKey hubKey = key_fill(0x33);
  const Address hub = addr_of(hubKey);
  HubRequest q = collateral_request(addr_of(key_fill(0x22)));
  HubRequest forged = q;
  ASSERT_EQ(hub_request_sign(signer(), key_fill(0x44), forged), Status::Ok);  // another key
  EXPECT_EQ(hub_request_verify(signer(), forged, hub), Status::WrongSigner);
  ASSERT_EQ(hub_request_sign(signer(), hubKey, q), Status::Ok);
  // Every field is covered: an altered amount, id, user or reason does not verify.
  HubRequest x = q;
  x.update.deposit.depositWeiHub = u(5001);
  EXPECT_NE(hub_request_verify(signer(), x, hub), Status::Ok);
  x = q;
  x.requestId = 43;
  EXPECT_NE(hub_request_verify(signer(), x, hub), Status::Ok);
  x = q;
  x.user = addr_of(key_fill(0x55));  // replayed to another user
  EXPECT_NE(hub_request_verify(signer(), x, hub), Status::Ok);
  x = q;
  x.update.reason = UpdateReason::ProposePendingWithdrawal;
  x.update.withdrawal.recipient = hub;
  x.update.withdrawal.withdrawalWeiHub = u(5000);
  x.update.withdrawal.timeout = 1900000000;
  EXPECT_NE(hub_request_verify(signer(), x, hub), Status::Ok);
}

TEST(HubRequestCodec, RefusesMalformed) {
  HubRequest q = collateral_request(addr_of(key_fill(0x22)));
  ASSERT_EQ(hub_request_sign(signer(), key_fill(0x33), q), Status::Ok);
  const auto good = enc(q);
  HubRequest d;
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_EQ(decode_hub_request(good.data(), n, d), Status::Truncated) << n;
  auto v = good;
  v.push_back(0);
  EXPECT_EQ(decode_hub_request(v.data(), v.size(), d), Status::TrailingBytes);
  v = good;
  v[1] = 0x03;
  EXPECT_EQ(decode_hub_request(v.data(), v.size(), d), Status::BadKind);
  v = good;
  v[42] = 0;  // request id 0
  EXPECT_EQ(decode_hub_request(v.data(), v.size(), d), Status::OutOfBounds);
  v = good;
  v[43] = 10;  // unknown reason
  EXPECT_EQ(decode_hub_request(v.data(), v.size(), d), Status::BadReason);
  v = good;
  v.back() = 30;
  EXPECT_EQ(decode_hub_request(v.data(), v.size(), d), Status::BadRecoveryId);
  uint8_t buf[kMaxHubRequestWire];
  size_t w = 0;
  HubRequest bad = q;
  bad.requestId = 0;
  EXPECT_EQ(encode_hub_request(bad, buf, sizeof buf, &w), Status::OutOfBounds);
  bad = q;
  bad.update.txCountGlobal = 7;  // a request names no txCountGlobal: the user picks it
  EXPECT_EQ(encode_hub_request(bad, buf, sizeof buf, &w), Status::BadArgs);
  Rng rng(5);
  for (int i = 0; i < 20000; ++i) {
    auto m = good;
    m[rng.below(m.size())] ^= static_cast<uint8_t>(1u << rng.below(8));
    if (decode_hub_request(m.data(), m.size(), d) == Status::Ok) {
      EXPECT_EQ(to_hex(enc(d)), to_hex(m));
    }
  }
}

TEST(HubRequestCodec, MaxSizeFitsBound) {
  HubRequest q = collateral_request(addr_of(key_fill(0x22)));
  q.requestId = kMaxCounter;
  q.update = channel_update_make(UpdateReason::OpenThread);
  SignedThreadState& t = q.update.thread.thread;
  t.state.threadId = kMaxCounter;
  t.state.txCount = kMaxCounter;
  t.state.balanceWeiSender = t.state.balanceWeiReceiver = U256::max();
  t.state.balanceTokenSender = t.state.balanceTokenReceiver = U256::max();
  t.hasSigA = true;
  t.sigA = sig_over(9);
  q.sig = sig_over(8);
  const auto w = enc(q);
  EXPECT_LE(w.size(), kMaxHubRequestWire);
  EXPECT_LE(kMaxHubRequestWire, kMaxWireMessage);
  EXPECT_LE(kMaxReplyWire, kMaxWireMessage);
}

}  // namespace
