// Connext v1 ChannelState / ThreadState JSON for the chain adapter: thin wrappers over
// picopay_json (agent/common), the one JSON codec of the project, mapping its error line
// to the chain's typed errors.
#include <memory>

#include "picopay/agent/json_state.hpp"
#include "picopay/chain/manager.hpp"

namespace picopay::chain {

namespace {
struct JsonDelete {
  void operator()(cJSON* p) const noexcept { cJSON_Delete(p); }
};
using Json = std::unique_ptr<cJSON, JsonDelete>;

template <typename T, typename Parse>
Result<T> from_json(const std::string& text, Parse parse) {
  std::string err;
  Json doc(picopay::json::parse_document(text, err));
  if (!doc) return make_error(ErrorKind::BadJson, err);
  T out{};
  if (!parse(doc.get(), out, err)) return make_error(ErrorKind::BadInput, err);
  return out;
}

std::string to_text(cJSON* obj) {
  Json doc(obj);
  return picopay::json::print(doc.get(), false);
}
}  // namespace

Result<SignedChannelState> channel_state_from_json(const std::string& text) {
  return from_json<SignedChannelState>(text, picopay::json::channel_from_json);
}

std::string channel_state_to_json(const SignedChannelState& s) { return to_text(picopay::json::channel_to_json(s)); }

Result<SignedThreadState> thread_state_from_json(const std::string& text) {
  return from_json<SignedThreadState>(text, picopay::json::thread_from_json);
}

std::string thread_state_to_json(const SignedThreadState& s) { return to_text(picopay::json::thread_to_json(s)); }

}  // namespace picopay::chain
