// picopay demo: the money flows it shows (docs/flows.md): a top-up of a running charger,
// the payee's cooperative cash-out at the end, the hub's idle collateral taken back.
#pragma once

#include <cjson/cJSON.h>

#include <cstdint>
#include <string>

namespace picopay::demo {

struct FlowRun {
  bool ok = false;
  std::string op, wei, transaction, error;
  uint64_t gasUsed = 0, elapsedMs = 0;
};

// Runs `picopay-agent OP AMOUNT --config CONFIG --wait 60` (the running agent's inbox,
// docs/flows.md) to its end, output to `log`, and reads the result JSON it prints.
FlowRun run_agent_flow(const std::string& agent_bin, const std::string& op, const std::string& amount,
                       const std::string& config, const std::string& log);

// {"ok","op","wei","transaction","gasUsed","elapsedMs","error"} (caller frees).
cJSON* flow_json(const FlowRun& r);

}  // namespace picopay::demo
