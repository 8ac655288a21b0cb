// picopay chain adapter: the on-chain subcommands of the `picopay` CLI.
//
//   deploy, deposit, exit, challenge, empty-channel, thread-exit, thread-challenge,
//   empty-thread, nuke-threads, withdraw, channel
// Each parses its arguments on the shared CLI11 Settings table (agent/common
// settings.hpp): --config FILE, --rpc-url URL (env ETH_RPC_URL), --keystore FILE |
// --private-key 0xHEX, (except deploy) --contract 0xADDR, amounts with units, and --json
// (one object: transaction hash, block, gas used, addresses, amounts in wei and ether).
// `picopay <subcommand> --help` prints its usage. docs/chain.md lists them all.
#pragma once

namespace picopay::chain {}

// True if `subcommand` is one of the above.
bool picopay_chain_cli_handles(const char* subcommand);
// Runs one subcommand; argv[0] is the subcommand name. Returns the process exit code
// (0 ok, 1 chain/RPC error, 2 usage error). Prints results on stdout, errors on stderr.
int picopay_chain_cli(int argc, char** argv);
