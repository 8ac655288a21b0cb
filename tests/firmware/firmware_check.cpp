// Host-side check of the firmware's signed output (the log of the QEMU run).
//
//   picopay_firmware_check <qemu.log>
//
// With the host build of the core and Debian's libsecp256k1 (an implementation
// independent of the firmware's build), it checks every line the Cortex-M4 printed:
//  - REFSIG is the Connext v1 reference signature and recovers to the reference user;
//  - STATE 0..8: each decodes, sigUser recovers to the device (key 0x22..22), sigHub to
//    the hub (key 0x33..33), txCountGlobal counts up from 1;
//  - UPDATE i: the hub's receiver-side rebuild (channel_accept) of STATE i-1 + UPDATE i
//    succeeds and equals STATE i exactly (so every update the device sent is valid and
//    explains its state), and the hash it countersigns is STATE i's;
//  - FINAL (loaded from the device's flash after a reboot) is byte-equal to STATE 8;
//  - THREAD 0..3 / TUPDATE 1..3: thread_accept rebuilds each thread state from the
//    previous one and the update, and every sigA recovers to the device;
//  - the run ended with RESULT 0.
// Prints one PASS/FAIL line per check and "N passed, M failed"; exit status 1 on failure.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/codec.hpp"
#include "picopay/hex.hpp"
#include "picopay/signer.hpp"
#include "picopay/state.hpp"

using namespace picopay;

namespace {

int g_pass = 0, g_fail = 0;

void check(const std::string& name, bool ok) {
  std::printf("%s %s\n", ok ? "PASS" : "FAIL", name.c_str());
  (ok ? g_pass : g_fail)++;
}

std::vector<uint8_t> unhex(const std::string& s) {
  std::vector<uint8_t> out(s.size() / 2);
  size_t n = 0;
  if (hex_decode(s.data(), s.size(), out.data(), out.size(), &n) != Status::Ok) return {};
  out.resize(n);
  return out;
}

constexpr int kPayments = 8;
constexpr int kThreadPayments = 3;

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <qemu.log>\n", argv[0]);
    return 2;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::fprintf(stderr, "cannot read %s\n", argv[1]);
    return 2;
  }
  std::map<std::string, std::map<int, std::vector<uint8_t>>> lines;
  std::string refsig, last;
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) last = line;
    std::istringstream ls(line);
    std::string tag, hex;
    int idx = -1;
    ls >> tag;
    if (tag == "REFSIG") ls >> refsig;
    if (tag == "STATE" || tag == "UPDATE" || tag == "FINAL" || tag == "THREAD" || tag == "TUPDATE") {
      ls >> idx >> hex;
      lines[tag][idx] = unhex(hex);
    }
  }

  Signer signer;
  if (signer.init() != Status::Ok) return 2;
  PrivateKey user_key, hub_key;
  std::memset(user_key.bytes, 0x22, 32);
  std::memset(hub_key.bytes, 0x33, 32);
  Address user{}, hub{};
  if (signer.address_of(user_key, user) != Status::Ok || signer.address_of(hub_key, hub) != Status::Ok) return 2;
  ChannelContext ctx{hub};

  // The reference vector (docs/design.md §3).
  check("REFSIG is the Connext v1 reference signature",
        refsig == "0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd111d3f7c772a27df6a61fdb9010d9ace38a5b"
                  "beb0a83902a1ba0c6fc61b97648851c");

  // Channel states and updates.
  check("9 STATE lines", lines["STATE"].size() == kPayments + 1);
  check("8 UPDATE lines", lines["UPDATE"].size() == kPayments);
  std::vector<SignedChannelState> states(kPayments + 1);
  for (int i = 0; i <= kPayments; ++i) {
    const auto& b = lines["STATE"][i];
    const std::string n = "STATE " + std::to_string(i);
    const bool dec = decode_channel_state(b.data(), b.size(), states[i]) == Status::Ok;
    check(n + " decodes", dec);
    if (!dec) continue;
    const Hash32 h = channel_hash(states[i].state);
    check(n + " sigUser is the device's",
          states[i].hasSigUser && signer.verify_eth(h, states[i].sigUser, user) == Status::Ok);
    check(n + " sigHub is the hub's", states[i].hasSigHub && signer.verify_eth(h, states[i].sigHub, hub) == Status::Ok);
    check(n + " txCountGlobal", states[i].state.txCountGlobal == static_cast<uint64_t>(i + 1));
    check(n + " belongs to the device's channel", states[i].state.user == user);
  }
  for (int i = 1; i <= kPayments; ++i) {
    const auto& b = lines["UPDATE"][i];
    const std::string n = "UPDATE " + std::to_string(i);
    static ChannelUpdate u;
    const bool dec = decode_channel_update(b.data(), b.size(), u) == Status::Ok;
    check(n + " decodes", dec);
    if (!dec) continue;
    check(n + " is a Payment to the hub", u.reason == UpdateReason::Payment && u.payment.recipient == Party::Hub);
    ThreadState items[1];
    Hash32 scratch[3];
    ThreadSet threads{items, 0, 1, scratch};
    ChannelState next;
    Hash32 hash;
    const Status st = channel_accept(ctx, signer, Party::Hub, states[i - 1].state, threads, u, next, hash);
    check(n + " is accepted by the hub's rules (" + status_name(st) + ")", st == Status::Ok);
    check(n + " rebuilds STATE " + std::to_string(i) + " exactly", st == Status::Ok && next == states[i].state);
    check(n + " countersigned hash", st == Status::Ok && hash == channel_hash(states[i].state));
  }
  check("FINAL (from flash after reboot) equals STATE 8",
        !lines["FINAL"][kPayments].empty() && lines["FINAL"][kPayments] == lines["STATE"][kPayments]);

  // Thread states and thread updates.
  check("4 THREAD lines", lines["THREAD"].size() == kThreadPayments + 1);
  std::vector<SignedThreadState> threads(kThreadPayments + 1);
  for (int i = 0; i <= kThreadPayments; ++i) {
    const auto& b = lines["THREAD"][i];
    const std::string n = "THREAD " + std::to_string(i);
    const bool dec = decode_thread_state(b.data(), b.size(), threads[i]) == Status::Ok;
    check(n + " decodes", dec);
    if (!dec) continue;
    check(n + " sigA is the device's",
          threads[i].hasSigA && signer.verify_eth(thread_hash(threads[i].state), threads[i].sigA, user) == Status::Ok);
    if (i == 0) continue;
    const auto& ub = lines["TUPDATE"][i];
    ThreadUpdate u;
    const bool udec = decode_thread_update(ub.data(), ub.size(), u) == Status::Ok;
    check("TUPDATE " + std::to_string(i) + " decodes", udec);
    if (!udec) continue;
    ThreadState next;
    const Status st = thread_accept(signer, threads[i - 1].state, u, next);
    check("TUPDATE " + std::to_string(i) + " accepted and rebuilds " + n,
          st == Status::Ok && next == threads[i].state);
  }

  check("the run ended with RESULT 0", last == "RESULT 0");
  std::printf("%d passed, %d failed\n", g_pass, g_fail);
  return g_fail == 0 ? 0 : 1;
}
