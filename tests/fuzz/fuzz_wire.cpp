// libFuzzer target: the core wire codec (core/include/picopay/codec.hpp), every message
// kind. The input is one message as it arrives from MQTT or a state record. Every
// decoder is tried on it; whatever a decoder accepts must re-encode to exactly the same
// bytes (the codec's canonicality promise: byte equality is value equality).
#include <cstring>

#include "fuzz_util.hpp"
#include "picopay/codec.hpp"

using namespace picopay;

namespace {

template <class T, class Dec, class Enc>
void roundtrip(const uint8_t* data, size_t size, Dec dec, Enc enc) {
  T v{};
  if (dec(data, size, v) != Status::Ok) return;
  uint8_t out[kMaxWireMessage];
  size_t written = 0;
  FUZZ_CHECK(enc(v, out, sizeof out, &written) == Status::Ok);
  FUZZ_CHECK(written == size);
  FUZZ_CHECK(std::memcmp(out, data, size) == 0);
  // The encoder's BufferTooSmall contract: the needed size, nothing else.
  if (written > 0) {
    size_t need = 0;
    FUZZ_CHECK(enc(v, out, written - 1, &need) == Status::BufferTooSmall);
    FUZZ_CHECK(need == written);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  WireKind kind{};
  const Status peek = wire_peek_kind(data, size, kind);
  bool any = false;
  auto dec_ok = [&](auto dec, auto& v) { return dec(data, size, v) == Status::Ok; };
  {
    SignedChannelState v{};
    if (dec_ok(decode_channel_state, v)) { any = true; FUZZ_CHECK(peek == Status::Ok && kind == WireKind::ChannelState); }
  }
  {
    SignedThreadState v{};
    if (dec_ok(decode_thread_state, v)) { any = true; FUZZ_CHECK(peek == Status::Ok && kind == WireKind::ThreadState); }
  }
  {
    SignedThreadState v{};
    if (dec_ok(decode_thread_payment, v)) {
      any = true;
      FUZZ_CHECK(peek == Status::Ok && kind == WireKind::ThreadPayment && v.hasSigA);
    }
  }
  {
    ChannelUpdate v{};
    if (dec_ok(decode_channel_update, v)) { any = true; FUZZ_CHECK(peek == Status::Ok && kind == WireKind::ChannelUpdate); }
  }
  {
    ThreadUpdate v{};
    if (dec_ok(decode_thread_update, v)) { any = true; FUZZ_CHECK(peek == Status::Ok && kind == WireKind::ThreadUpdate); }
  }
  (void)any;
  roundtrip<SignedChannelState>(data, size, decode_channel_state, encode_channel_state);
  roundtrip<SignedThreadState>(data, size, decode_thread_state, encode_thread_state);
  roundtrip<SignedThreadState>(data, size, decode_thread_payment, encode_thread_payment);
  roundtrip<ChannelUpdate>(data, size, decode_channel_update, encode_channel_update);
  roundtrip<ThreadUpdate>(data, size, decode_thread_update, encode_thread_update);
  return 0;
}
