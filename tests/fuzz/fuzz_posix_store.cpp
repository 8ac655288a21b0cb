// libFuzzer target: the POSIX state store's record file (port/posix posix.hpp
// PosixStateStore: "PPSR" header, length, CRC-32) and the agent's record inside it
// (agent/device state.hpp: agent.json, loaded by state_load at start-up). The input is
// the file as found on disk (a crash, a full disk, a hand edit or another local user
// may have left anything). Byte 0 bit 0 set: the rest is framed with a correct header
// and CRC first, so the fuzzer reaches the agent's JSON record.
// Checks: load() returns Ok only for a file of exactly header + len + CRC bytes and never
// writes past its buffer; an accepted agent record re-serialises to a fixed point
// (to_json(from_json(to_json(s))) == to_json(s)).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "fuzz_util.hpp"
#include "picopay/device/state.hpp"
#include "picopay/port/posix.hpp"

using namespace picopay;

namespace {

const std::string& dir() {
  static std::string d = [] {
    const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    std::string t = std::string(base) + "/picopay-fuzz-XXXXXX";
    if (!mkdtemp(t.data())) std::abort();
    return t;
  }();
  return d;
}

void write_file(const std::string& path, const uint8_t* p, size_t n) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) std::abort();
  if (!port::write_all(fd, p, n)) std::abort();
  close(fd);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::vector<uint8_t> file;
  if (data[0] & 1) {
    const uint32_t len = static_cast<uint32_t>(size - 1);
    file = {'P', 'P', 'S', 'R', 1, 0, 0, 0,
            static_cast<uint8_t>(len), static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len >> 16),
            static_cast<uint8_t>(len >> 24)};
    file.insert(file.end(), data + 1, data + size);
    const uint32_t crc = port::crc32_ieee(0, file.data(), file.size());
    for (int i = 0; i < 4; ++i) file.push_back(static_cast<uint8_t>(crc >> (8 * i)));
  } else {
    file.assign(data + 1, data + size);
  }
  write_file(dir() + "/agent.json", file.data(), file.size());

  port::PosixStateStore store(dir().c_str(), "agent.json");
  std::vector<uint8_t> buf(file.size() + 16, 0xA5);
  const size_t cap = file.size() > 16 ? file.size() - 16 : 0;
  size_t len = 0;
  const Status st = store.load(buf.data(), cap, &len);
  for (size_t i = cap; i < buf.size(); ++i) FUZZ_CHECK(buf[i] == 0xA5);
  if (st == Status::Ok) {
    FUZZ_CHECK(file.size() == port::PosixStateStore::kHeaderSize + len + port::PosixStateStore::kTrailerSize);
    FUZZ_CHECK(std::memcmp(buf.data(), file.data() + port::PosixStateStore::kHeaderSize, len) == 0);
  } else if (st == Status::BufferTooSmall) {
    FUZZ_CHECK(len > cap);
  }

  device::AgentState s;
  std::string err;
  if (device::state_load(dir(), s, err)) {
    const std::string t1 = device::state_to_json(s);
    device::AgentState back;
    std::string err2;
    if (!device::state_from_json(t1, back, err2)) {
      std::fprintf(stderr, "the agent's own record is refused: %s\n%s\n", err2.c_str(), t1.c_str());
      FUZZ_CHECK(false);
    }
    FUZZ_CHECK(device::state_to_json(back) == t1);
  } else {
    FUZZ_CHECK(!err.empty());
  }
  return 0;
}
