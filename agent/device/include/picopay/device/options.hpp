// picopay-agent's settings table (flags and config keys, agent/common settings.hpp).
#pragma once

#include <CLI/CLI.hpp>

#include "picopay/agent/options.hpp"
#include "picopay/agent/settings.hpp"
#include "picopay/device/agent.hpp"

namespace picopay::device {

// Declares every agent setting on `s` (config keys) and, if `app` is not null, its flags.
// `keys`, `broker` and `common` receive the shared key, broker and log options.
void bind_settings(agent::Settings& s, CLI::App* app, Config& cfg, agent::KeyOptions& keys, agent::BrokerRefs& broker,
                   agent::CommonOptions& common);

}  // namespace picopay::device
