// libFuzzer target: Connext v1 JSON states and updates (agent/common json_state.hpp, and
// the chain CLI's channel_state_from_json / thread_state_from_json that read state
// files). The input is a JSON document as a file or a counterparty would give it.
// Whatever is accepted must print and parse back to the same value, and print again to
// the same text (one exact JSON form per state).
#include <cjson/cJSON.h>

#include <string>

#include "fuzz_util.hpp"
#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"

using namespace picopay;

namespace {

struct Doc {
  cJSON* p;
  explicit Doc(cJSON* q) : p(q) {}
  ~Doc() { cJSON_Delete(p); }
};

std::string text_of(cJSON* o) {
  FUZZ_CHECK(o != nullptr);
  std::string t = json::print(o, false);
  cJSON_Delete(o);
  return t;
}

template <class T, class From, class To, class Same>
void roundtrip(const cJSON* obj, From from, To to, Same same) {
  T v{};
  std::string err;
  if (!from(obj, v, err)) {
    FUZZ_CHECK(!err.empty());
    return;
  }
  const std::string t1 = text_of(to(v));
  Doc d(cJSON_Parse(t1.c_str()));
  FUZZ_CHECK(d.p != nullptr);
  T back{};
  std::string err2;
  if (!from(d.p, back, err2)) {
    std::fprintf(stderr, "printed form refused: %s\n  text: %s\n", err2.c_str(), t1.c_str());
    FUZZ_CHECK(false);
  }
  FUZZ_CHECK(same(v, back));
  FUZZ_CHECK(text_of(to(back)) == t1);
}

bool same_channel(const SignedChannelState& a, const SignedChannelState& b) {
  return a.state == b.state && a.hasSigUser == b.hasSigUser && a.hasSigHub == b.hasSigHub &&
         (!a.hasSigUser || a.sigUser == b.sigUser) && (!a.hasSigHub || a.sigHub == b.sigHub);
}
bool same_thread(const SignedThreadState& a, const SignedThreadState& b) {
  return a.state == b.state && a.hasSigA == b.hasSigA && (!a.hasSigA || a.sigA == b.sigA);
}
// Updates have no operator==: the JSON text round-trip above is the comparison.
bool same_update(const ChannelUpdate& a, const ChannelUpdate& b) {
  return a.reason == b.reason && a.txCountGlobal == b.txCountGlobal && a.sig == b.sig;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::string err;
  Doc doc(json::parse_document(text, err));
  if (doc.p == nullptr) {
    FUZZ_CHECK(!err.empty());
  } else {
    roundtrip<SignedChannelState>(doc.p, json::channel_from_json, json::channel_to_json, same_channel);
    roundtrip<SignedThreadState>(doc.p, json::thread_from_json, json::thread_to_json, same_thread);
    roundtrip<ChannelUpdate>(doc.p, json::update_from_json, json::update_to_json, same_update);
  }
  // The chain CLI's file readers (same parsers behind a text interface).
  if (auto c = chain::channel_state_from_json(text)) {
    auto back = chain::channel_state_from_json(chain::channel_state_to_json(*c));
    FUZZ_CHECK(back && same_channel(*c, *back));
  }
  if (auto t = chain::thread_state_from_json(text)) {
    auto back = chain::thread_state_from_json(chain::thread_state_to_json(*t));
    FUZZ_CHECK(back && same_thread(*t, *back));
  }
  return 0;
}
