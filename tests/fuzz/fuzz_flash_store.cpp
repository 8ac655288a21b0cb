// libFuzzer target: the bare-metal flash state store's records (port/baremetal
// flash_state_store.hpp) as it finds them on flash after a reboot: any content of its two
// sectors. Input: byte 0 write unit, byte 1 power-cut point, byte 2 cut mode / seed,
// byte 3 bit 0 "fix up the CRCs" (so the fuzzer reaches intact-looking records), then
// the two sectors' bytes (missing bytes read as erased 0xFF).
// Checks: load() never reads or writes outside its buffer, returns only a record of at
// most capacity() bytes; a save() then load() returns the new record and a higher
// sequence; a save() cut by a power failure at any flash operation leaves load()
// returning the previous record or the new one (documented atomicity), starting from
// whatever was on the flash.
#include <cstring>
#include <vector>

#include "fuzz_util.hpp"
#include "picopay/port/baremetal/crc32.hpp"
#include "picopay/port/baremetal/flash_state_store.hpp"
#include "picopay/port/baremetal/ram_flash.hpp"

using namespace picopay;
using namespace picopay::port::baremetal;

namespace {

constexpr size_t kSector = 256;

struct Loaded {
  Status st;
  std::vector<uint8_t> rec;
};

Loaded load_all(FlashStateStore& store) {
  Loaded l{Status::Ok, {}};
  uint8_t buf[kSector + 8];
  std::memset(buf, 0xA5, sizeof buf);
  size_t len = 0;
  l.st = store.load(buf, kSector, &len);
  FUZZ_CHECK(buf[kSector] == 0xA5);  // nothing past the cap
  if (l.st == Status::Ok) {
    FUZZ_CHECK(len <= store.capacity());
    l.rec.assign(buf, buf + len);
  }
  return l;
}

void fix_crc(uint8_t* sector, size_t cap) {
  if (std::memcmp(sector, "PPS1", 4) != 0) return;
  uint32_t len = static_cast<uint32_t>(sector[8]) | (static_cast<uint32_t>(sector[9]) << 8) |
                 (static_cast<uint32_t>(sector[10]) << 16) | (static_cast<uint32_t>(sector[11]) << 24);
  if (len > cap) return;
  uint32_t c = crc32_update(0, sector, 12);
  c = crc32_update(c, sector + FlashStateStore::kHeaderBytes, len);
  for (int i = 0; i < 4; ++i) sector[12 + i] = static_cast<uint8_t>(c >> (8 * i));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  const size_t wu = size_t{1} << (data[0] % 5);
  const uint32_t cut_at = data[1];
  const RamFlash::CutMode mode = (data[2] & 1) ? RamFlash::CutMode::Torn : RamFlash::CutMode::Before;
  const uint32_t seed = data[2] >> 1;
  const bool fix = data[3] & 1;
  static uint8_t mem[2 * kSector];
  RamFlash flash(mem, kSector, 2, wu);
  const size_t n = size - 4 < sizeof mem ? size - 4 : sizeof mem;
  std::memcpy(mem, data + 4, n);  // the constructor erased it: the rest stays 0xFF
  FlashStateStore store(flash, 0);
  FUZZ_CHECK(store.valid());
  if (fix) {
    fix_crc(mem, store.capacity());
    fix_crc(mem + kSector, store.capacity());
  }

  const Loaded before = load_all(store);
  uint32_t seq_before = 0;
  const Status sq = store.latest_sequence(&seq_before);
  // With no record yet, latest_sequence says 0 (Ok) or the load error.
  if (before.st == Status::Ok) FUZZ_CHECK(sq == Status::Ok);
  else FUZZ_CHECK(sq == before.st || (sq == Status::Ok && seq_before == 0));

  // A new record (derived from the input so it varies), saved with a power cut.
  std::vector<uint8_t> rec(data + 4, data + 4 + (n < 40 ? n : 40));
  rec.push_back(static_cast<uint8_t>(seed));
  flash.arm_power_cut(cut_at, mode, seed);
  const Status saved = store.save(rec.data(), rec.size());
  const bool cut = !flash.powered();
  flash.power_on();
  const Loaded after = load_all(store);
  if (!cut) {
    FUZZ_CHECK(saved == Status::Ok);
    FUZZ_CHECK(after.st == Status::Ok && after.rec == rec);
    uint32_t seq_after = 0;
    FUZZ_CHECK(store.latest_sequence(&seq_after) == Status::Ok);
    if (before.st == Status::Ok) FUZZ_CHECK(seq_after == seq_before + 1);
  } else {
    FUZZ_CHECK(saved != Status::Ok);
    const bool is_new = after.st == Status::Ok && after.rec == rec;
    const bool is_old = after.st == before.st && after.rec == before.rec;
    // With no intact record before, "the previous record" is none at all.
    const bool is_none = before.st != Status::Ok && after.st == Status::NotFound;
    if (!(is_new || is_old || is_none)) {
      std::fprintf(stderr, "after a cut at op %u (%s): before %s (%zu bytes), after %s (%zu bytes)\n", cut_at,
                   mode == RamFlash::CutMode::Torn ? "torn" : "before", status_name(before.st), before.rec.size(),
                   status_name(after.st), after.rec.size());
      FUZZ_CHECK(false);
    }
  }
  FUZZ_CHECK(flash.reprogram_violations() == 0);
  return 0;
}
