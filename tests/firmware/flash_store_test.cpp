// Host tests of port/baremetal: CRC-32, the RAM flash simulator, the two-sector
// FlashStateStore (including power cuts at every flash operation of a long sequence of
// updates), the tick clock and the entropy hook.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "picopay/port/baremetal/crc32.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/hooks.hpp"
#include "picopay/port/baremetal/ram_flash.hpp"
#include "picopay/port/baremetal/tick_clock.hpp"

using picopay::Status;
using namespace picopay::port::baremetal;

namespace {

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

// Record number `i` of a test sequence: its length varies (0..~300 bytes, odd lengths
// included) and every byte depends on i, so two records never share a prefix.
std::vector<uint8_t> record(uint32_t i) {
  std::vector<uint8_t> r((i * 37u) % 301u);
  for (size_t k = 0; k < r.size(); ++k) r[k] = static_cast<uint8_t>(i * 131u + k * 7u + 1u);
  return r;
}

struct Sim {
  explicit Sim(size_t sector = 512, size_t sectors = 2, size_t unit = 8)
      : mem(sector * sectors), flash(mem.data(), sector, sectors, unit) {}
  std::vector<uint8_t> mem;
  RamFlash flash;
};

std::vector<uint8_t> load_all(FlashStateStore& store, Status* st) {
  std::vector<uint8_t> out(1024);
  size_t len = 0;
  *st = store.load(out.data(), out.size(), &len);
  out.resize(*st == Status::Ok ? len : 0);
  return out;
}

}  // namespace

TEST(Crc32, CheckValue) {
  const auto v = bytes("123456789");
  EXPECT_EQ(crc32_update(0, v.data(), v.size()), 0xCBF43926u);
  EXPECT_EQ(crc32_update(0, nullptr, 0), 0u);
  // Chained updates equal one update over the concatenation.
  EXPECT_EQ(crc32_update(crc32_update(0, v.data(), 4), v.data() + 4, 5), 0xCBF43926u);
}

TEST(RamFlash, NorSemantics) {
  Sim s(64, 2, 4);
  uint8_t buf[8];
  ASSERT_EQ(s.flash.read(0, 0, buf, 8), Status::Ok);
  for (uint8_t b : buf) EXPECT_EQ(b, 0xFF);
  const uint8_t a[4] = {0x0F, 0xF0, 0x00, 0xFF};
  ASSERT_EQ(s.flash.program(0, 4, a, 4), Status::Ok);
  const uint8_t b2[4] = {0xF0, 0xFF, 0xFF, 0x0F};
  ASSERT_EQ(s.flash.program(0, 4, b2, 4), Status::Ok);  // AND, and a counted violation
  ASSERT_EQ(s.flash.read(0, 4, buf, 4), Status::Ok);
  EXPECT_EQ(buf[0], 0x00);
  EXPECT_EQ(buf[1], 0xF0);
  EXPECT_EQ(buf[2], 0x00);
  EXPECT_EQ(buf[3], 0x0F);
  EXPECT_EQ(s.flash.reprogram_violations(), 1u);
  EXPECT_EQ(s.flash.program(0, 2, a, 4), Status::OutOfBounds);   // misaligned
  EXPECT_EQ(s.flash.program(0, 64, a, 4), Status::OutOfBounds);  // past the sector
  EXPECT_EQ(s.flash.erase(2), Status::OutOfBounds);
  ASSERT_EQ(s.flash.erase(0), Status::Ok);
  ASSERT_EQ(s.flash.read(0, 4, buf, 4), Status::Ok);
  EXPECT_EQ(buf[0], 0xFF);
}

TEST(RamFlash, PowerCutStopsEverythingUntilPowerOn) {
  Sim s(64, 2, 4);
  const uint8_t a[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  s.flash.arm_power_cut(1, RamFlash::CutMode::Before);
  EXPECT_EQ(s.flash.program(0, 0, a, 8), Status::IoError);  // unit 0 written, unit 1 cut
  EXPECT_FALSE(s.flash.powered());
  uint8_t buf[8];
  EXPECT_EQ(s.flash.read(0, 0, buf, 8), Status::IoError);
  s.flash.power_on();
  ASSERT_EQ(s.flash.read(0, 0, buf, 8), Status::Ok);
  EXPECT_EQ(0, std::memcmp(buf, a, 4));
  EXPECT_EQ(buf[4], 0xFF);
  EXPECT_EQ(buf[7], 0xFF);
}

TEST(FlashStateStore, EmptyThenSaveLoad) {
  Sim s;
  FlashStateStore store(s.flash, 0);
  ASSERT_TRUE(store.valid());
  EXPECT_EQ(store.capacity(), 512u - FlashStateStore::kHeaderBytes);
  Status st;
  load_all(store, &st);
  EXPECT_EQ(st, Status::NotFound);
  for (uint32_t i = 1; i <= 5; ++i) {
    const auto r = record(i);
    ASSERT_EQ(store.save(r.data(), r.size()), Status::Ok);
    EXPECT_EQ(load_all(store, &st), r);
    EXPECT_EQ(st, Status::Ok);
    uint32_t seq = 0;
    ASSERT_EQ(store.latest_sequence(&seq), Status::Ok);
    EXPECT_EQ(seq, i);
  }
  // A second store over the same flash (a reboot) sees the same record.
  FlashStateStore again(s.flash, 0);
  EXPECT_EQ(load_all(again, &st), record(5));
  EXPECT_EQ(s.flash.reprogram_violations(), 0u);
}

TEST(FlashStateStore, Errors) {
  Sim s;
  FlashStateStore store(s.flash, 0);
  std::vector<uint8_t> big(store.capacity() + 1, 0xAB);
  EXPECT_EQ(store.save(big.data(), big.size()), Status::OutOfBounds);
  big.pop_back();
  ASSERT_EQ(store.save(big.data(), big.size()), Status::Ok);  // exactly capacity
  uint8_t small[10];
  size_t len = 0;
  EXPECT_EQ(store.load(small, sizeof small, &len), Status::BufferTooSmall);
  EXPECT_EQ(len, big.size());
  // Bad geometry: only one sector left from sector 1.
  FlashStateStore bad(s.flash, 1);
  EXPECT_FALSE(bad.valid());
  EXPECT_EQ(bad.save(small, 1), Status::Corrupt);
}

TEST(FlashStateStore, DamagedCommittedRecordIsCorruptUnlessTheOtherIsIntact) {
  Sim s;
  FlashStateStore store(s.flash, 0);
  const auto r1 = record(1), r2 = record(2);
  ASSERT_EQ(store.save(r1.data(), r1.size()), Status::Ok);  // sector 0
  ASSERT_EQ(store.save(r2.data(), r2.size()), Status::Ok);  // sector 1
  Status st;
  s.mem[512 + FlashStateStore::kHeaderBytes + 3] ^= 0x10;  // a bit flips in the latest
  EXPECT_EQ(load_all(store, &st), r1);                     // falls back to the previous
  EXPECT_EQ(st, Status::Ok);
  s.mem[FlashStateStore::kHeaderBytes + 1] ^= 0x01;  // and in the previous one too
  load_all(store, &st);
  EXPECT_EQ(st, Status::Corrupt);
}

TEST(FlashStateStore, SequenceNumberWraps) {
  Sim s;
  FlashStateStore store(s.flash, 0);
  // Forge a committed record with seq 0xFFFFFFFF in sector 0 through a store that
  // believes it: save once, then patch seq and CRC by rewriting the sector by hand.
  const auto r = record(9);
  ASSERT_EQ(store.save(r.data(), r.size()), Status::Ok);
  uint8_t head[12];
  std::memcpy(head, s.mem.data(), 12);
  head[4] = head[5] = head[6] = head[7] = 0xFF;
  uint32_t crc = crc32_update(crc32_update(0, head, 12), r.data(), r.size());
  std::memcpy(s.mem.data() + 4, head + 4, 4);
  for (int k = 0; k < 4; ++k) s.mem[12 + k] = static_cast<uint8_t>(crc >> (8 * k));
  uint32_t seq = 0;
  ASSERT_EQ(store.latest_sequence(&seq), Status::Ok);
  ASSERT_EQ(seq, 0xFFFFFFFFu);
  const auto r2 = record(10);
  ASSERT_EQ(store.save(r2.data(), r2.size()), Status::Ok);  // seq wraps to 0
  ASSERT_EQ(store.latest_sequence(&seq), Status::Ok);
  EXPECT_EQ(seq, 0u);
  Status st;
  EXPECT_EQ(load_all(store, &st), r2);
}

// The property the issue asks for: cut the power at every flash operation of a long
// sequence of updates, both cleanly and with a torn operation; after the reboot the
// store returns the last committed record or the one being written, never anything
// else, and the next save works.
class PowerCut : public ::testing::TestWithParam<std::tuple<size_t, RamFlash::CutMode>> {};

TEST_P(PowerCut, EveryOperationOfALongSequence) {
  const size_t unit = std::get<0>(GetParam());
  const RamFlash::CutMode mode = std::get<1>(GetParam());
  constexpr uint32_t kUpdates = 60;
  Sim s(512, 2, unit);
  uint32_t committed = 0;  // record number of the last save that returned Ok (0: none)
  uint32_t cuts = 0, saw_new = 0, saw_old = 0;
  for (uint32_t i = 1; i <= kUpdates; ++i) {
    const auto r = record(i);
    // Cut at operation 0, 1, 2, ... of this save until a save completes uncut.
    for (uint32_t n = 0;; ++n) {
      FlashStateStore store(s.flash, 0);  // a fresh boot
      s.flash.arm_power_cut(n, mode, 0x1234567u + i * 977u + n);
      const Status st = store.save(r.data(), r.size());
      const bool cut = !s.flash.powered();
      s.flash.power_on();
      if (!cut) {
        ASSERT_EQ(st, Status::Ok) << "update " << i;
        committed = i;
        break;
      }
      ++cuts;
      ASSERT_EQ(st, Status::IoError);
      FlashStateStore rebooted(s.flash, 0);
      Status lst;
      const auto got = load_all(rebooted, &lst);
      if (committed == 0 && lst == Status::NotFound) {
        ++saw_old;
        continue;
      }
      ASSERT_EQ(lst, Status::Ok) << "update " << i << " cut at op " << n;
      if (got == r) {
        ++saw_new;  // the cut came after the commit unit was complete
        committed = i;
        break;
      }
      ASSERT_EQ(got, record(committed)) << "update " << i << " cut at op " << n
                                        << ": neither the previous nor the new record";
      ++saw_old;
    }
    // The committed record survives a reboot.
    FlashStateStore check(s.flash, 0);
    Status lst;
    ASSERT_EQ(load_all(check, &lst), record(committed));
  }
  EXPECT_EQ(committed, kUpdates);
  EXPECT_GT(cuts, kUpdates * 3);
  EXPECT_GT(saw_old, 0u);
  // (saw_new stays 0 when no cut lands after a complete commit unit: with
  // CutMode::Before nothing but reads follows it.)
  (void)saw_new;
  EXPECT_EQ(s.flash.reprogram_violations(), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Units, PowerCut,
    ::testing::Combine(::testing::Values(size_t{1}, size_t{4}, size_t{8}, size_t{16}),
                       ::testing::Values(RamFlash::CutMode::Before, RamFlash::CutMode::Torn)));

TEST(TickClock, CountsMillisecondsAndWallClock) {
  TickClock clock(100);  // 10 ms per tick
  EXPECT_EQ(clock.monotonic_ms(), 0u);
  EXPECT_EQ(clock.unix_seconds(), 0u);
  for (int i = 0; i < 250; ++i) clock.tick();
  EXPECT_EQ(clock.monotonic_ms(), 2500u);
  clock.set_unix_seconds(1'700'000'000u);
  for (int i = 0; i < 150; ++i) clock.tick();
  EXPECT_EQ(clock.unix_seconds(), 1'700'000'001u);
  EXPECT_EQ(clock.monotonic_ms(), 4000u);
  EXPECT_EQ(clock.ticks(), 400u);
  TickClock odd(32768);  // a watch-crystal rate
  for (int i = 0; i < 32768 * 3 + 16384; ++i) odd.tick();
  EXPECT_EQ(odd.monotonic_ms(), 3500u);
}

namespace {
int fill_counter(void* ctx, uint8_t* out, size_t len) {
  auto* n = static_cast<uint8_t*>(ctx);
  for (size_t i = 0; i < len; ++i) out[i] = (*n)++;
  return 0;
}
int fill_stuck(void*, uint8_t* out, size_t len) {
  std::memset(out, 0xFF, len);
  return 0;
}
int fill_fail(void*, uint8_t*, size_t) { return -5; }
}  // namespace

TEST(HookEntropy, PassesGoodOutputRefusesStuckOrFailed) {
  uint8_t n = 0;
  HookEntropy good(fill_counter, &n);
  uint8_t buf[32];
  EXPECT_EQ(good.fill(buf, sizeof buf), Status::Ok);
  EXPECT_EQ(buf[31], 31);
  HookEntropy stuck(fill_stuck, nullptr);
  EXPECT_EQ(stuck.fill(buf, sizeof buf), Status::IoError);
  EXPECT_EQ(buf[0], 0);  // wiped
  HookEntropy failed(fill_fail, nullptr);
  EXPECT_EQ(failed.fill(buf, 4), Status::IoError);
  HookEntropy none(nullptr, nullptr);
  EXPECT_EQ(none.fill(buf, 4), Status::IoError);
}
