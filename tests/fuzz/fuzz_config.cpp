// libFuzzer target: the JSON config files of picopay-agent (agent/device/src/config.cpp,
// config_load_file) and picopay-hub (agent/hub/src/config.cpp, parse_config with
// --config). The input is the file's content; it is served from a memfd so the parsers
// read it through their own file code. Checks: a refusal always says why, nothing the
// sanitizers object to (numbers like 1e999 reach both parsers).
#include <string>

#include "config.hpp"  // agent/hub/src
#include "fuzz_util.hpp"
#include "picopay/device/agent.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static picopay_fuzz::MemFile file;
  const std::string& path = file.write(data, size);
  {
    picopay::device::Config cfg;
    std::string err;
    if (!picopay::device::config_load_file(path, cfg, err)) FUZZ_CHECK(!err.empty());
  }
  {
    picopay::hub::Config cfg;
    std::string err;
    std::string a0 = "picopay-hub", a1 = "--config", a2 = path;
    char* argv[] = {a0.data(), a1.data(), a2.data(), nullptr};
    const int rc = picopay::hub::parse_config(3, argv, cfg, err);
    FUZZ_CHECK(rc == 0 || rc == 2);
    if (rc == 2) FUZZ_CHECK(!err.empty());
    if (rc == 0) FUZZ_CHECK(cfg.broker_port > 0 && cfg.broker_port <= 65535 && cfg.batch_max >= 1);
  }
  return 0;
}
