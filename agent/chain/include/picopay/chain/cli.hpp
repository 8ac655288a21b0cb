// picopay chain adapter: the on-chain subcommands of the `picopay` CLI.
//
//   deploy, deposit, exit, challenge, empty-channel, thread-exit, thread-challenge,
//   empty-thread, nuke-threads, withdraw, channel
// Each takes --rpc URL, --key FILE | --private-key 0xHEX, and (except deploy)
// --contract 0xADDR. `picopay <subcommand> --help` prints its usage. docs/chain.md lists
// them all.
#pragma once

namespace picopay::chain {}

// True if `subcommand` is one of the above.
bool picopay_chain_cli_handles(const char* subcommand);
// Runs one subcommand; argv[0] is the subcommand name. Returns the process exit code
// (0 ok, 1 chain/RPC error, 2 usage error). Prints results on stdout, errors on stderr.
int picopay_chain_cli(int argc, char** argv);
