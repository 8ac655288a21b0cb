// Where the installed programs find their data, and what `--version` prints.
//
// Layout (the same in an install prefix and in a build tree):
//   <prefix>/bin/picopay, picopay-agent, picopay-hub
//   <prefix>/share/picopay/contracts/ChannelManager.json   (the compiled contract)
//   <prefix>/share/picopay/devchain/devchain.sh            (the dev-chain launcher)
// The build tree mirrors it: build/bin/ and build/share/picopay/ (links made by CMake).
// No build-tree path is compiled into a program.
#pragma once

#include <string>

namespace picopay::agent {

// "picopay X.Y.Z (git <short hash>)", or "(git unknown)" when built outside a git
// checkout. X.Y.Z is the top-level project(VERSION).
const char* version_text() noexcept;

// True if "--version" is among argv[1..argc) before a "--" (which ends the options).
bool version_requested(int argc, char** argv) noexcept;

// Prints version_text() and a newline on stdout; returns 0 (the exit code).
int print_version() noexcept;

// The directory of the running executable (readlink /proc/self/exe; "." if unreadable).
std::string exe_dir();

// The data directory: $PICOPAY_DATA_DIR if set and non-empty, else
// exe_dir() + "/../share/picopay".
std::string data_dir();

}  // namespace picopay::agent
