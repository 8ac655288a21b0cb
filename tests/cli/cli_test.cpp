// The picopay CLI as a user drives it: real processes, stdin/stdout/stderr and exit codes.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "picopay/agent/json_state.hpp"
#include "picopay/state.hpp"

namespace {

struct RunResult {
  int rc;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class Cli : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/picopay-cli-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::system(("rm -rf " + dir_).c_str()); }

  RunResult run(const std::string& args, const std::string& in, const std::string& env = "") {
    { std::ofstream(dir_ + "/in", std::ios::binary) << in; }
    const std::string cmd = env + " " + PICOPAY_CLI + " " + args + " < " + dir_ + "/in > " + dir_ + "/out 2> " +
                            dir_ + "/err";
    const int st = std::system(cmd.c_str());
    return RunResult{WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(dir_ + "/out"), slurp(dir_ + "/err")};
  }

  // A failing command: exactly one line on stderr, nothing on stdout, non-zero exit.
  void expect_clean_failure(const RunResult& r) {
    EXPECT_NE(r.rc, 0);
    EXPECT_EQ(r.out, "");
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  }

  std::string dir_;
};

const char* kKey22 = "0x2222222222222222222222222222222222222222222222222222222222222222";
const char* kRefState =
    R"({"contractAddress":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390","user":"0x1563915e194D8CfBA1943570603F7606A3115508",)"
    R"("recipient":"0x1563915e194D8CfBA1943570603F7606A3115508","balanceWeiHub":"0","balanceWeiUser":"0",)"
    R"("balanceTokenHub":"0","balanceTokenUser":"0","pendingDepositWeiHub":"0","pendingDepositWeiUser":"100",)"
    R"("pendingDepositTokenHub":"0","pendingDepositTokenUser":"0","pendingWithdrawalWeiHub":"0",)"
    R"("pendingWithdrawalWeiUser":"0","pendingWithdrawalTokenHub":"0","pendingWithdrawalTokenUser":"0",)"
    R"("txCountGlobal":1,"txCountChain":1,"threadRoot":"0x0000000000000000000000000000000000000000000000000000000000000000",)"
    R"("threadCount":0,"timeout":0})";
const char* kRefHash = "0x94d622244e6754b4b88fc5b13467fed24d6722f6416890d462b9dc109ba0dd97";
const char* kRefSig =
    "0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd111d3f7c772a27df6a61fdb9010d9ace38a5bbeb0a83902a1ba0c6"
    "fc61b97648851c";

TEST_F(Cli, AddressOfReferenceKey) {
  const RunResult r = run(std::string("address --private-key ") + kKey22, "");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "0x1563915e194D8CfBA1943570603F7606A3115508\n");
}

TEST_F(Cli, HashSignRecoverReferenceVector) {
  RunResult r = run("hash channel", kRefState);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kRefHash) + "\n");
  r = run(std::string("sign channel --private-key ") + kKey22, kRefState);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kRefSig) + "\n");
  r = run(std::string("recover --hash ") + kRefHash + " --sig " + kRefSig, "");
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "0x1563915e194D8CfBA1943570603F7606A3115508\n");
}

TEST_F(Cli, KeccakVectors) {
  RunResult r = run("keccak", "");
  EXPECT_EQ(r.out, "0xc5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470\n");
  r = run("keccak", "0x616263\n");
  EXPECT_EQ(r.out, "0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45\n");
}

TEST_F(Cli, BadInputFailsCleanly) {
  expect_clean_failure(run("hash channel", "not json"));
  expect_clean_failure(run("hash channel", "{}"));
  expect_clean_failure(run("hash channel", "[1,2]"));
  expect_clean_failure(run("hash thread", kRefState));  // a channel is not a thread
  expect_clean_failure(run("hash widget", kRefState));
  expect_clean_failure(run("hash", kRefState));
  expect_clean_failure(run("sign channel --private-key 0x1234", kRefState));
  expect_clean_failure(run("sign channel --private-key 0x" + std::string(64, '0'), kRefState));  // zero key
  expect_clean_failure(run("sign channel", kRefState));  // no key
  expect_clean_failure(run(std::string("recover --hash ") + kRefHash + " --sig 0x1234", ""));
  expect_clean_failure(run("decode channel", "zz"));
  expect_clean_failure(run("decode channel", "0200"));
  expect_clean_failure(run("nonsense", ""));
  expect_clean_failure(run("hash channel --bogus 1", kRefState));
  // Field-level errors: a bad EIP-55 checksum, an amount given as a number, a counter over 2^53-1.
  std::string s = kRefState;
  RunResult r = run("hash channel", s.replace(s.find("0x1563915e194D8"), 15, "0x1563915E194D8"));
  expect_clean_failure(r);
  EXPECT_NE(r.err.find("EIP-55"), std::string::npos) << r.err;
  s = kRefState;
  r = run("hash channel", s.replace(s.find("\"100\""), 5, "100"));
  expect_clean_failure(r);
  EXPECT_NE(r.err.find("pendingDepositWeiUser"), std::string::npos) << r.err;
  s = kRefState;
  expect_clean_failure(run("hash channel", s.replace(s.find("\"txCountGlobal\":1"), 17, "\"txCountGlobal\":9007199254740992")));
  s = kRefState;
  expect_clean_failure(run("hash channel", s.replace(s.find("\"txCountGlobal\":1"), 17, "\"txCountGlobal\":1.5")));
}

TEST_F(Cli, HighSSignatureRefused) {
  // s' = n - s with v flipped is the malleable twin of the reference signature (EIP-2).
  const RunResult r = run(std::string("recover --hash ") + kRefHash +
                        " --sig 0x16f1c52cfdfcac6b24a7eb7cef66e98568dea5c7fc49afbbe25b786d1da1fd11"
                        "e2c0c8883d58209e95e046fef2653c7015f0f1dc2cb87e9c7f0f70e31ebfb8f41b",
                    "");
  expect_clean_failure(r);
}

// decode(encode(x)) == x for random valid states, whatever their field values.
TEST_F(Cli, EncodeDecodeRoundTripRandomStates) {
  std::mt19937_64 rng(42);
  auto rand_amount = [&]() {
    picopay::U256 v;
    const int shape = static_cast<int>(rng() % 4);
    for (auto& w : v.w) w = shape == 0 ? 0 : (shape == 1 ? ~0ULL : rng());
    if (shape == 2) v.w[1] = v.w[2] = v.w[3] = 0;
    return v;
  };
  auto rand_addr = [&]() {
    picopay::Address a;
    for (auto& b : a.bytes) b = static_cast<uint8_t>(rng());
    return a;
  };
  for (int i = 0; i < 12; ++i) {
    picopay::SignedChannelState c;
    std::memset(&c, 0, sizeof c);
    picopay::ChannelState& s = c.state;
    s.contractAddress = rand_addr();
    s.user = rand_addr();
    s.recipient = (i % 2) ? s.user : rand_addr();
    for (picopay::U256* f : {&s.balanceWeiHub, &s.balanceWeiUser, &s.balanceTokenHub, &s.balanceTokenUser,
                             &s.pendingDepositWeiHub, &s.pendingDepositWeiUser, &s.pendingDepositTokenHub,
                             &s.pendingDepositTokenUser, &s.pendingWithdrawalWeiHub, &s.pendingWithdrawalWeiUser,
                             &s.pendingWithdrawalTokenHub, &s.pendingWithdrawalTokenUser})
      *f = rand_amount();
    s.txCountGlobal = rng() % (picopay::kMaxCounter + 1);
    s.txCountChain = (i % 3) ? rng() % 1000 : picopay::kMaxCounter;
    s.threadCount = rng() % 5;
    s.timeout = rng() % 2000000000;
    if (i % 2) for (auto& b : s.threadRoot.bytes) b = static_cast<uint8_t>(rng());
    cJSON* j = picopay::json::channel_to_json(c);
    const std::string json = picopay::json::print(j, false);
    cJSON_Delete(j);
    const RunResult enc = run("encode channel", json);
    ASSERT_EQ(enc.rc, 0) << enc.err << json;
    const RunResult dec = run("decode channel", enc.out);
    ASSERT_EQ(dec.rc, 0) << dec.err;
    std::string err;
    cJSON* back = picopay::json::parse_document(dec.out, err);
    ASSERT_NE(back, nullptr) << err;
    picopay::SignedChannelState d;
    ASSERT_TRUE(picopay::json::channel_from_json(back, d, err)) << err;
    cJSON_Delete(back);
    EXPECT_TRUE(d.state == c.state) << json << "\n" << dec.out;
    EXPECT_FALSE(d.hasSigUser || d.hasSigHub);
  }
}

TEST_F(Cli, EncodeKeepsSignatures) {
  std::string s = kRefState;
  s.insert(s.size() - 1, std::string(",\"sigUser\":\"") + kRefSig + "\",\"sigHub\":\"" + kRefSig + "\"");
  const RunResult enc = run("encode channel", s);
  ASSERT_EQ(enc.rc, 0) << enc.err;
  const RunResult dec = run("decode channel", enc.out);
  ASSERT_EQ(dec.rc, 0) << dec.err;
  EXPECT_NE(dec.out.find(std::string("\"sigUser\":\t\"") + kRefSig), std::string::npos) << dec.out;
  EXPECT_NE(dec.out.find(std::string("\"sigHub\":\t\"") + kRefSig), std::string::npos) << dec.out;
  // The double-signed reference state stays far under 300 bytes on the wire.
  EXPECT_LE((enc.out.size() - 1) / 2, 300u);
}

TEST_F(Cli, ThreadEncodeDecodeRoundTrip) {
  const std::string t =
      R"({"contractAddress":"0x7d73424a8256c0b2ba245e5d5a3de8820e45f390","sender":"0x1563915e194D8CfBA1943570603F7606A3115508",)"
      R"("receiver":"0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed","threadId":7,"balanceWeiSender":"900",)"
      R"("balanceWeiReceiver":"100","balanceTokenSender":"0","balanceTokenReceiver":"115792089237316195423570985008687907853269984665640564039457584007913129639935","txCount":3})";
  const RunResult enc = run("encode thread", t);
  ASSERT_EQ(enc.rc, 0) << enc.err;
  const RunResult dec = run("decode thread", enc.out);
  ASSERT_EQ(dec.rc, 0) << dec.err;
  EXPECT_EQ(run("hash thread", dec.out).out, run("hash thread", t).out);
}

TEST_F(Cli, KeygenSealsAndKeyFileSigns) {
  const std::string env = "PICOPAY_PASSPHRASE='correct horse'";
  const std::string file = dir_ + "/hub.key";
  RunResult r = run("keygen --out " + file + " --import-hex " + kKey22, "", env);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "0x1563915e194D8CfBA1943570603F7606A3115508\n");
  struct stat st;
  ASSERT_EQ(stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // The file does not contain the key in the clear.
  EXPECT_EQ(slurp(file).find(std::string(32, '\x22')), std::string::npos);
  r = run("sign channel --key " + file, kRefState, env);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, std::string(kRefSig) + "\n");
  expect_clean_failure(run("sign channel --key " + file, kRefState, "PICOPAY_PASSPHRASE=wrong"));
  expect_clean_failure(run("keygen --out " + file, "", env));  // never overwrites
  // A fresh key: a valid address that the key file reproduces.
  r = run("keygen --out " + dir_ + "/new.key", "", env);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out.size(), 43u);
  EXPECT_EQ(run("address --key " + dir_ + "/new.key", "", env).out, r.out);
}

TEST_F(Cli, HelpForEveryCommand) {
  RunResult r = run("--help", "");
  EXPECT_EQ(r.rc, 0);
  for (const char* c : {"address", "hash", "sign", "recover", "keccak", "encode", "decode", "keygen"}) {
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
    const RunResult h = run(std::string(c) + " --help", "");
    EXPECT_EQ(h.rc, 0) << c;
    EXPECT_NE(h.out.find(std::string("usage: picopay ") + c), std::string::npos) << c;
  }
#ifdef PICOPAY_CLI_HAS_CHAIN
  // the chain subcommands, on the same parser: usage on stdout, exit 0, and --json offered
  for (const char* c : {"deploy", "deposit", "withdraw", "exit", "challenge", "empty-channel", "thread-exit",
                        "thread-challenge", "empty-thread", "nuke-threads", "withdraw-owed", "channel"}) {
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
    const RunResult h = run(std::string(c) + " --help", "");
    EXPECT_EQ(h.rc, 0) << c;
    EXPECT_NE(h.out.find(std::string("usage: picopay ") + c), std::string::npos) << c << h.out;
    EXPECT_NE(h.out.find("--json"), std::string::npos) << c;
    EXPECT_NE(h.out.find("--rpc-url"), std::string::npos) << c;
  }
#endif
}

}  // namespace

namespace {
// The Web3 Secret Storage spec's PBKDF2 vector (also in geth's v3_test_vector.json).
const char* kV3Pbkdf2 = R"({"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},
"ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2",
"kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
"mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},"id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3})";
}  // namespace

TEST_F(Cli, KeystoreImportExportAndJson) {
  const std::string v3 = dir_ + "/geth.json";
  { std::ofstream(v3) << kV3Pbkdf2; }
  const std::string addr = "0x008AeEda4D805471dF9b2A5B0f38A0C3bCBA786b";
  // every program reads a v3 keystore directly
  RunResult r = run("address --keystore " + v3, "", "PICOPAY_PASSPHRASE=testpassword");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, addr + "\n");
  r = run("address --json --keystore " + v3, "", "PICOPAY_PASSPHRASE=testpassword");
  EXPECT_EQ(r.out, "{\"address\":\"" + addr + "\"}\n");
  expect_clean_failure(run("address --keystore " + v3, "", "PICOPAY_PASSPHRASE=wrong"));
  // import: v3 -> sealed, under a new passphrase
  r = run("keystore import --in " + v3 + " --out " + dir_ + "/sealed.key", "",
          "PICOPAY_PASSPHRASE=testpassword PICOPAY_NEW_PASSPHRASE=new");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, addr + "\n");
  EXPECT_EQ(run("address --keystore " + dir_ + "/sealed.key", "", "PICOPAY_PASSPHRASE=new").out, addr + "\n");
  // export: sealed -> v3 (light scrypt) -> reads back; never overwrites
  r = run("keystore export --in " + dir_ + "/sealed.key --out " + dir_ + "/out.json --scrypt-n 1024", "",
          "PICOPAY_PASSPHRASE=new PICOPAY_NEW_PASSPHRASE=again");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(run("address --keystore " + dir_ + "/out.json", "", "PICOPAY_PASSPHRASE=again").out, addr + "\n");
  r = run("keystore export --kdf pbkdf2 --pbkdf2-c 1000 --in " + dir_ + "/sealed.key --out " + dir_ + "/p.json", "",
          "PICOPAY_PASSPHRASE=new PICOPAY_NEW_PASSPHRASE=again");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(run("address --keystore " + dir_ + "/p.json", "", "PICOPAY_PASSPHRASE=again").out, addr + "\n");
  expect_clean_failure(run("keystore export --in " + dir_ + "/sealed.key --out " + dir_ + "/out.json", "",
                           "PICOPAY_PASSPHRASE=new"));
  // --json on the other data commands
  EXPECT_EQ(run("keccak --json", "0x616263\n").out,
            "{\"hash\":\"0x4e03657aea45a94fc7d47ba826c8d667c0d1e6e33a64a036ec44f58fa12d6c45\"}\n");
}
