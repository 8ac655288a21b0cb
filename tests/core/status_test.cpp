// Status numbers travel on the wire (the status byte of a Nack / RequestNack,
// docs/wire-format.md): every value is pinned here, so renumbering one breaks a test.
#include <gtest/gtest.h>

#include <cstring>
#include <set>
#include <string>

#include "picopay/status.hpp"

using namespace picopay;

namespace {

struct Pinned {
  Status s;
  int number;
  const char* name;
};

constexpr Pinned kPinned[] = {
    {Status::Ok, 0, "Ok"},
    {Status::BufferTooSmall, 1, "BufferTooSmall"},
    {Status::Truncated, 2, "Truncated"},
    {Status::TrailingBytes, 3, "TrailingBytes"},
    {Status::NonCanonical, 4, "NonCanonical"},
    {Status::BadVersion, 5, "BadVersion"},
    {Status::BadKind, 6, "BadKind"},
    {Status::OutOfBounds, 7, "OutOfBounds"},
    {Status::BadHex, 8, "BadHex"},
    {Status::BadDecimal, 9, "BadDecimal"},
    {Status::BadChecksum, 10, "BadChecksum"},
    {Status::Overflow, 11, "Overflow"},
    {Status::Underflow, 12, "Underflow"},
    {Status::BadPrivateKey, 13, "BadPrivateKey"},
    {Status::BadSignature, 14, "BadSignature"},
    {Status::HighS, 15, "HighS"},
    {Status::BadRecoveryId, 16, "BadRecoveryId"},
    {Status::WrongSigner, 17, "WrongSigner"},
    {Status::CryptoUnavailable, 18, "CryptoUnavailable"},
    {Status::BadTxCount, 19, "BadTxCount"},
    {Status::TxCountChainDecreased, 20, "TxCountChainDecreased"},
    {Status::NotConserved, 21, "NotConserved"},
    {Status::WrongContract, 22, "WrongContract"},
    {Status::WrongParty, 23, "WrongParty"},
    {Status::BadArgs, 24, "BadArgs"},
    {Status::BadReason, 25, "BadReason"},
    {Status::PendingOperation, 26, "PendingOperation"},
    {Status::ThreadNotFound, 27, "ThreadNotFound"},
    {Status::ThreadExists, 28, "ThreadExists"},
    {Status::TooManyThreads, 29, "TooManyThreads"},
    {Status::Unauthorized, 30, "Unauthorized"},
    {Status::IoError, 31, "IoError"},
    {Status::NotFound, 32, "NotFound"},
    {Status::Corrupt, 33, "Corrupt"},
    {Status::NotRequested, 34, "NotRequested"},
    {Status::NeedsChain, 35, "NeedsChain"},
    {Status::NotOnChain, 36, "NotOnChain"},
    {Status::RateOutOfBounds, 37, "RateOutOfBounds"},
    {Status::StaleRate, 38, "StaleRate"},
    {Status::NoInventory, 39, "NoInventory"},
    {Status::ChannelInDispute, 40, "ChannelInDispute"},
    {Status::TimeoutOutOfBounds, 41, "TimeoutOutOfBounds"},
    {Status::Busy, 42, "Busy"},
    {Status::OutOfSync, 43, "OutOfSync"},
    {Status::StaleState, 44, "StaleState"},
    {Status::StateConflict, 45, "StateConflict"},
    {Status::NotDoubleSigned, 46, "NotDoubleSigned"},
    {Status::UnknownState, 47, "UnknownState"},
    {Status::Duplicate, 48, "Duplicate"},
    {Status::Halted, 49, "Halted"},
};

TEST(StatusNumbers, EveryValuePinned) {
  ASSERT_EQ(sizeof kPinned / sizeof kPinned[0], static_cast<size_t>(kStatusCount));
  for (size_t i = 0; i < sizeof kPinned / sizeof kPinned[0]; ++i) {
    const Pinned& p = kPinned[i];
    EXPECT_EQ(static_cast<int>(p.s), p.number) << p.name;
    EXPECT_EQ(static_cast<int>(i), p.number) << "numbers are dense, in order: " << p.name;
    EXPECT_STREQ(status_name(p.s), p.name);
  }
}

TEST(StatusNumbers, NamesAndMessagesUniqueAndPresent) {
  std::set<std::string> names, messages;
  for (int i = 0; i < kStatusCount; ++i) {
    const Status s = static_cast<Status>(i);
    ASSERT_NE(status_name(s), nullptr);
    EXPECT_STRNE(status_name(s), "Unknown") << i;
    EXPECT_STRNE(status_message(s), "unknown error") << i;
    names.insert(status_name(s));
    messages.insert(status_message(s));
  }
  EXPECT_EQ(names.size(), static_cast<size_t>(kStatusCount));
  EXPECT_EQ(messages.size(), static_cast<size_t>(kStatusCount));
  EXPECT_STREQ(status_name(static_cast<Status>(kStatusCount)), "Unknown");
  EXPECT_STREQ(status_message(static_cast<Status>(255)), "unknown error");
}

}  // namespace
