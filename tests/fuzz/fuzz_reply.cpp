// libFuzzer target: the Reply codec (Ack / Nack / Sync / RequestNack, docs/wire-format.md) through
// reply_codec.hpp. The input is a reply payload as it arrives from MQTT. Whatever is
// accepted must re-encode to exactly the same bytes and respect the documented shape:
// a Nack or RequestNack never carries Ok, the state of a Nack/Sync/RequestNack decodes as a
// channel state.
#include <cstring>

#include "fuzz_util.hpp"
#include "reply_codec.hpp"

using namespace picopay;
namespace reply = picopay_fuzz::reply;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  reply::Reply r;
  if (reply::decode(data, size, r) != Status::Ok) return 0;
  FUZZ_CHECK(r.kind == reply::Kind::Ack || r.kind == reply::Kind::Nack || r.kind == reply::Kind::Sync ||
             r.kind == reply::Kind::RequestNack);
  FUZZ_CHECK(r.txCountGlobal <= kMaxCounter);
  if (r.kind == reply::Kind::Nack || r.kind == reply::Kind::RequestNack) FUZZ_CHECK(r.status != Status::Ok);
  if (r.kind == reply::Kind::Ack) FUZZ_CHECK(r.sig.v == 27 || r.sig.v == 28);
  std::vector<uint8_t> out;
  FUZZ_CHECK(reply::encode(r, out) == Status::Ok);
  FUZZ_CHECK(out.size() == size);
  FUZZ_CHECK(std::memcmp(out.data(), data, size) == 0);
  reply::Reply back;
  FUZZ_CHECK(reply::decode(out.data(), out.size(), back) == Status::Ok);
  FUZZ_CHECK(back.kind == r.kind && back.txCountGlobal == r.txCountGlobal);
  return 0;
}
