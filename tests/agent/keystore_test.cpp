// Web3 Secret Storage v3 keystores: the spec's test vectors (both KDFs, as in geth's
// accounts/keystore/testdata/v3_test_vector.json), geth's short-key vectors, round trips,
// and hostile files.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "picopay/agent/options.hpp"
#include "picopay/hex.hpp"
#include "picopay/keyfile.hpp"
#include "picopay/keystore_v3.hpp"
#include "picopay/signer.hpp"
#include "support/process.hpp"

using namespace picopay;

namespace {

const char* kScrypt = R"({"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"83dbcc02d8ccb40e466191a123791e0e"},
  "ciphertext":"d172bf743a674da9cdad04534d56926ef8358534d458fffccd4e6ad2fbde479c","kdf":"scrypt",
  "kdfparams":{"dklen":32,"n":262144,"r":1,"p":8,"salt":"ab0c7876052600dd703518d6fc3fe8984592145b591fc8fb5c6d43190334ba19"},
  "mac":"2103ac29920d71da29f15d75b4a16dbe95cfd7ff8faea1056c33131d846e3097"},
  "id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3})";
const char* kPbkdf2 = R"({"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"6087dab2f9fdbbfaddc31a909735c1e6"},
  "ciphertext":"5318b4d5bcd28de64ee5559e671353e16f075ecae9f99c7a79a38af5f869aa46","kdf":"pbkdf2",
  "kdfparams":{"c":262144,"dklen":32,"prf":"hmac-sha256","salt":"ae3cd4e7013836a3df6bd7241b12db061dbe2c6785853cce422d148a624ce0bd"},
  "mac":"517ead924a9d0dc3124507e3393d175ce3ff7c1e96529c6c555ce9e51205e9b2"},
  "id":"3198bc9c-6672-5ab3-d995-4942343ae5b6","version":3})";
const char* kPriv = "7a28b5ba57c53603b0b07b56bba752f7784bf506fa95edc395f5cf6c7514fe9d";
// geth: a 31-byte key (leading zero byte dropped by an old version), scrypt n = 2
const char* k31 = R"({"crypto":{"cipher":"aes-128-ctr","cipherparams":{"iv":"e0c41130a323adc1446fc82f724bca2f"},
  "ciphertext":"9517cd5bdbe69076f9bf5057248c6c050141e970efa36ce53692d5d59a3984","kdf":"scrypt",
  "kdfparams":{"dklen":32,"n":2,"r":8,"p":1,"salt":"711f816911c92d649fb4c84b047915679933555030b3552c1212609b38208c63"},
  "mac":"d5e116151c6aa71470e67a7d42c9620c75c4d23229847dcc127794f0732b0db5"},
  "id":"fecfc4ce-e956-48fd-953b-30f8b52ed66c","version":3})";

std::string hex_of(const PrivateKey& k) {
  char b[65];
  hex_encode(k.bytes, 32, b, false);
  return std::string(b, 64);
}

std::string replace(std::string s, const std::string& from, const std::string& to) {
  const size_t p = s.find(from);
  EXPECT_NE(p, std::string::npos) << from;
  if (p != std::string::npos) s.replace(p, from.size(), to);
  return s;
}

}  // namespace

TEST(Keystore, SpecVectorsDecryptWithBothKdfs) {
  PrivateKey k;
  std::string why;
  ASSERT_EQ(keystore_v3_decrypt(kPbkdf2, "testpassword", 12, k, &why), Status::Ok) << why;
  EXPECT_EQ(hex_of(k), kPriv);
  ASSERT_EQ(keystore_v3_decrypt(kScrypt, "testpassword", 12, k, &why), Status::Ok) << why;
  EXPECT_EQ(hex_of(k), kPriv);
  ASSERT_EQ(keystore_v3_decrypt(k31, "foo", 3, k, &why), Status::Ok) << why;
  EXPECT_EQ(hex_of(k), "00fa7b3db73dc7dfdf8c5fbdb796d741e4488628c41fc4febd9160a866ba0f35");
}

TEST(Keystore, WrongPassphraseAndTamperingAreRefused) {
  PrivateKey k;
  std::string why;
  EXPECT_EQ(keystore_v3_decrypt(kPbkdf2, "testpassworD", 12, k, &why), Status::BadSignature);
  EXPECT_NE(why.find("wrong passphrase"), std::string::npos);
  EXPECT_EQ(hex_of(k), std::string(64, '0'));
  // one ciphertext bit, the iv is not under the MAC but changes the key: refuse the first
  EXPECT_EQ(keystore_v3_decrypt(replace(k31, "9517cd", "9517ce"), "foo", 3, k, &why), Status::BadSignature);
  // hostile parameters never run
  EXPECT_EQ(keystore_v3_decrypt(replace(k31, "\"n\":2,", "\"n\":1073741824,"), "foo", 3, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt(replace(k31, "\"n\":2,", "\"n\":3,"), "foo", 3, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt(replace(kPbkdf2, "262144", "4000000000"), "x", 1, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt(replace(k31, "aes-128-ctr", "aes-128-cbc"), "foo", 3, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt(replace(k31, "\"version\":3", "\"version\":2"), "foo", 3, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt(replace(kPbkdf2, "hmac-sha256", "hmac-sha1"), "x", 1, k, &why), Status::Corrupt);
  EXPECT_EQ(keystore_v3_decrypt("{", "foo", 3, k, &why), Status::Corrupt);
}

TEST(Keystore, RoundTripBothKdfs) {
  Signer s;
  ASSERT_EQ(s.init(), Status::Ok);
  PrivateKey key;
  ASSERT_EQ(private_key_parse((std::string("0x") + kPriv).c_str(), 66, key), Status::Ok);
  Address a;
  ASSERT_EQ(s.address_of(key, a), Status::Ok);
  for (KeystoreKdf kdf : {KeystoreKdf::Scrypt, KeystoreKdf::Pbkdf2}) {
    KeystoreParams p;
    p.kdf = kdf;
    p.scrypt_n = 1024;  // light, for the test
    p.pbkdf2_c = 1000;
    std::string json;
    ASSERT_EQ(keystore_v3_encrypt(key, a, "pw", 2, p, json), Status::Ok);
    EXPECT_NE(json.find("\"address\":\"008aeeda4d805471df9b2a5b0f38a0c3bcba786b\""), std::string::npos) << json;
    EXPECT_NE(json.find(kdf == KeystoreKdf::Scrypt ? "\"kdf\":\"scrypt\"" : "\"kdf\":\"pbkdf2\""), std::string::npos);
    PrivateKey back;
    ASSERT_EQ(keystore_v3_decrypt(json, "pw", 2, back, nullptr), Status::Ok);
    EXPECT_EQ(hex_of(back), kPriv);
    EXPECT_EQ(keystore_v3_decrypt(json, "pW", 2, back, nullptr), Status::BadSignature);
    // the default parameters are what geth writes
    KeystoreParams def;
    EXPECT_EQ(def.scrypt_n, 262144u);
    EXPECT_EQ(def.scrypt_r, 8u);
    EXPECT_EQ(def.scrypt_p, 1u);
  }
}

TEST(Keystore, ProgramsLoadEveryKeyFileKind) {
  const std::string dir = testsupport::make_temp_dir("picopay-keystore");
  setenv("PICOPAY_PASSPHRASE", "testpassword", 1);
  PrivateKey k;
  std::string err;
  // a v3 keystore (geth / foundry)
  ASSERT_TRUE(testsupport::write_file(dir + "/geth.json", kPbkdf2));
  ASSERT_TRUE(agent::load_keystore_file(dir + "/geth.json", k, err)) << err;
  EXPECT_EQ(hex_of(k), kPriv);
  // a picopay sealed key file
  PrivateKey key;
  ASSERT_EQ(private_key_parse((std::string("0x") + kPriv).c_str(), 66, key), Status::Ok);
  ASSERT_EQ(keyfile_write((dir + "/sealed.key").c_str(), key, "testpassword", 12), Status::Ok);
  ASSERT_TRUE(agent::load_keystore_file(dir + "/sealed.key", k, err)) << err;
  EXPECT_EQ(hex_of(k), kPriv);
  // plain hex: only in a private file
  ASSERT_TRUE(testsupport::write_file(dir + "/plain.key", std::string("0x") + kPriv + "\n"));
  ::chmod((dir + "/plain.key").c_str(), 0644);
  EXPECT_FALSE(agent::load_keystore_file(dir + "/plain.key", k, err));
  EXPECT_NE(err.find("chmod 600"), std::string::npos) << err;
  ::chmod((dir + "/plain.key").c_str(), 0600);
  ASSERT_TRUE(agent::load_keystore_file(dir + "/plain.key", k, err)) << err;
  EXPECT_EQ(hex_of(k), kPriv);
  // wrong passphrase: one clear line
  setenv("PICOPAY_PASSPHRASE", "nope", 1);
  EXPECT_FALSE(agent::load_keystore_file(dir + "/geth.json", k, err));
  EXPECT_NE(err.find("wrong passphrase"), std::string::npos) << err;
  EXPECT_FALSE(agent::load_keystore_file(dir + "/sealed.key", k, err));
  EXPECT_NE(err.find("wrong passphrase"), std::string::npos) << err;
  unsetenv("PICOPAY_PASSPHRASE");
  testsupport::remove_tree(dir);
}
