// ParallelAcceptor (agent/hub/src/parallel.hpp): the pool's results must be exactly what
// the serial path computes (channel_accept as the hub, then sign_eth; RFC 6979 makes the
// countersignature deterministic), and a run stops at its first refused update.
#include "parallel.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

namespace {

using namespace picopay;

PrivateKey key_of(uint8_t seed) {
  PrivateKey k;
  std::memset(k.bytes, seed, 32);
  return k;
}

struct World {
  Signer signer;
  PrivateKey hubKey = key_of(0x33);
  Address hub{};
  World() {
    EXPECT_EQ(signer.init(), Status::Ok);
    EXPECT_EQ(signer.address_of(hubKey, hub), Status::Ok);
  }
};

// A funded channel for user `seed` and `n` signed payments to the hub.
hub::ChannelRun make_run(World& w, uint8_t seed, int n, std::mt19937& rng) {
  const PrivateKey userKey = key_of(seed);
  hub::ChannelRun r;
  r.start = channel_state_zero();
  std::memset(r.start.contractAddress.bytes, 0x7d, 20);
  EXPECT_EQ(w.signer.address_of(userKey, r.start.user), Status::Ok);
  r.start.recipient = r.start.user;
  r.start.balanceWeiUser = U256::from_u64(1000000);
  r.start.balanceWeiHub = U256::from_u64(5);
  r.start.txCountGlobal = 7;
  const ChannelContext ctx{w.hub};
  const ThreadSet none{nullptr, 0, 0, nullptr};
  ChannelState prev = r.start;
  for (int i = 0; i < n; ++i) {
    hub::PaymentJob j;
    j.update = channel_update_make(UpdateReason::Payment);
    j.update.payment.recipient = Party::Hub;
    j.update.payment.amountWei = U256::from_u64(1 + rng() % 1000);
    ChannelState next;
    EXPECT_EQ(channel_propose(ctx, w.signer, userKey, Party::User, prev, none, j.update, next), Status::Ok);
    prev = next;
    r.jobs.push_back(j);
  }
  return r;
}

void expect_serial_equivalent(World& w, const hub::ChannelRun& r) {
  const ChannelContext ctx{w.hub};
  const ThreadSet none{nullptr, 0, 0, nullptr};
  ChannelState prev = r.start;
  for (const hub::PaymentJob& j : r.jobs) {
    ChannelState next;
    Hash32 h;
    ASSERT_EQ(channel_accept(ctx, w.signer, Party::Hub, prev, none, j.update, next, h), Status::Ok);
    Signature sig;
    ASSERT_EQ(w.signer.sign_eth(w.hubKey, h, sig), Status::Ok);
    ASSERT_EQ(j.status, Status::Ok);
    EXPECT_TRUE(j.prev == prev);
    EXPECT_TRUE(j.next == next);
    EXPECT_EQ(j.hash, h);
    EXPECT_EQ(j.sigHub, sig);
    prev = next;
  }
}

TEST(ParallelAcceptor, MatchesTheSerialPathAcrossChannelsAndThreads) {
  World w;
  std::mt19937 rng(5);
  for (unsigned threads : {0u, 1u, 3u}) {
    hub::ParallelAcceptor pool(threads, w.hubKey, w.hub);
    std::vector<hub::ChannelRun> runs;
    for (uint8_t u = 1; u <= 9; ++u) runs.push_back(make_run(w, static_cast<uint8_t>(0x40 + u), 1 + u % 4, rng));
    pool.run(runs);
    for (const auto& r : runs) expect_serial_equivalent(w, r);
    // The pool is reusable batch after batch.
    std::vector<hub::ChannelRun> again{make_run(w, 0x51, 3, rng), make_run(w, 0x52, 2, rng)};
    pool.run(again);
    for (const auto& r : again) expect_serial_equivalent(w, r);
  }
}

TEST(ParallelAcceptor, ARunStopsAtItsFirstRefusedUpdate) {
  World w;
  std::mt19937 rng(9);
  hub::ParallelAcceptor pool(2, w.hubKey, w.hub);
  std::vector<hub::ChannelRun> runs{make_run(w, 0x61, 4, rng), make_run(w, 0x62, 3, rng)};
  runs[0].jobs[1].update.sig.s[31] ^= 1;  // forged: no longer the user's signature
  pool.run(runs);
  EXPECT_EQ(runs[0].jobs[0].status, Status::Ok);
  EXPECT_NE(runs[0].jobs[1].status, Status::Ok);
  EXPECT_EQ(runs[0].jobs[2].status, Status::BadArgs);  // never validated
  EXPECT_EQ(runs[0].jobs[3].status, Status::BadArgs);
  expect_serial_equivalent(w, runs[1]);  // other channels are unaffected
}

}  // namespace
