// Secrets in files (private keys in configs, broker passwords): a file holding one must
// be readable and writable by its owner only (mode 0600 or stricter), because any local
// user can otherwise read it; command-line arguments are worse (every local user sees
// them in ps and /proc/<pid>/cmdline), so the programs take secrets from 0600 files or
// the environment. docs/mqtt-protocol.md "Broker security".
#pragma once

#include <string>

namespace picopay::agent {

// Checks that `path` is not accessible to group or others (mode & 077 == 0).
// Returns false with `err` = one line naming the file, its mode and the fix, e.g.
//   "config hub.json holds a private key or password and is readable by group/others
//    (mode 0644): run chmod 600 hub.json"
// `what` describes the file ("config hub.json holds a private key or password").
// Also false (err: the stat error) if the file cannot be stat'ed.
bool secret_file_private(const std::string& path, const std::string& what, std::string& err);

// Reads a password file: `path` must pass secret_file_private; the secret is the first
// line without its line end ("\n" or "\r\n"); it must not be empty. Errors (false, err
// set, `out` untouched): unreadable file, exposed mode, empty first line.
bool secret_file_read(const std::string& path, std::string& out, std::string& err);

// Writes `text` to `path` created (or truncated) with mode 0600 (an existing file is
// chmod-ed to 0600 before anything is written). False with `err` on any I/O error.
bool secret_file_write(const std::string& path, const std::string& text, std::string& err);

}  // namespace picopay::agent
