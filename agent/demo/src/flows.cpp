// picopay demo: running the agent's flow commands (flows.hpp).
#include "picopay/demo/flows.hpp"

#include <unistd.h>

#include <cstring>

#include "picopay/demo/support.hpp"

namespace picopay::demo {

FlowRun run_agent_flow(const std::string& agent_bin, const std::string& op, const std::string& amount,
                       const std::string& config, const std::string& log) {
  FlowRun r;
  r.op = op;
  Child c;
  if (!c.start({agent_bin, op, amount, "--config", config, "--wait", "60"}, log, false, true)) {
    r.error = "cannot start picopay-agent " + op;
    return r;
  }
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(c.stdout_fd(), buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  const int rc = c.wait(90000);
  cJSON* o = nullptr;
  const size_t p = out.rfind("{\"ok\"");
  if (p != std::string::npos) o = cJSON_Parse(out.c_str() + p);
  if (!cJSON_IsObject(o)) {
    r.error = "picopay-agent " + op + " exited with " + std::to_string(rc) + " and no result (see " + log + ")";
    cJSON_Delete(o);
    return r;
  }
  r.ok = rc == 0 && cJSON_IsTrue(cJSON_GetObjectItem(o, "ok"));
  if (auto* v = cJSON_GetObjectItem(o, "wei"); cJSON_IsString(v)) r.wei = v->valuestring;
  if (auto* v = cJSON_GetObjectItem(o, "transaction"); cJSON_IsString(v)) r.transaction = v->valuestring;
  if (auto* v = cJSON_GetObjectItem(o, "error"); cJSON_IsString(v)) r.error = v->valuestring;
  if (auto* v = cJSON_GetObjectItem(o, "gasUsed"); cJSON_IsNumber(v)) r.gasUsed = static_cast<uint64_t>(v->valuedouble);
  if (auto* v = cJSON_GetObjectItem(o, "elapsedMs"); cJSON_IsNumber(v))
    r.elapsedMs = static_cast<uint64_t>(v->valuedouble);
  cJSON_Delete(o);
  return r;
}

cJSON* flow_json(const FlowRun& r) {
  cJSON* o = cJSON_CreateObject();
  cJSON_AddBoolToObject(o, "ok", r.ok);
  cJSON_AddStringToObject(o, "op", r.op.c_str());
  cJSON_AddStringToObject(o, "wei", r.wei.c_str());
  if (!r.transaction.empty()) cJSON_AddStringToObject(o, "transaction", r.transaction.c_str());
  cJSON_AddNumberToObject(o, "gasUsed", static_cast<double>(r.gasUsed));
  cJSON_AddNumberToObject(o, "elapsedMs", static_cast<double>(r.elapsedMs));
  if (!r.error.empty()) cJSON_AddStringToObject(o, "error", r.error.c_str());
  return o;
}

}  // namespace picopay::demo
