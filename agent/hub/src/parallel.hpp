// Parallel pre-validation of Payment updates for picopay-hub.
//
// The hub applies the updates of one channel strictly in order on its worker thread, and
// the expensive part of each — recovering the user's signature and countersigning, two
// secp256k1 operations (~70 us) — is a pure function of (previous state, update). So
// before the serial pass over a batch, the hub hands every channel's run of consecutive
// Payment updates to this pool: one job per channel, the channels spread over the
// threads, each thread with its own libsecp256k1 context. The serial pass then uses a
// precomputed result only if it was computed from exactly the state the channel has at
// that point; otherwise it validates as before. Nothing precomputed leaves the process
// unless the serial pass commits it (the hub releases signatures only after COMMIT), so a
// discarded speculative signature was never seen by anyone (DESIGN.md §4.1).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "picopay/channel.hpp"
#include "picopay/signer.hpp"

namespace picopay::hub {

// One update to pre-validate.
struct PaymentJob {
  ChannelUpdate update;  // reason Payment, decoded from the wire
  // Results (valid when status == Ok):
  Status status = Status::BadArgs;
  ChannelState prev{};  // the state it was validated against
  ChannelState next{};
  Hash32 hash{};
  Signature sigHub{};
};

// The consecutive Payment updates of one channel, in txCountGlobal order; each is
// validated against the result of the one before, starting from `start`.
struct ChannelRun {
  ChannelState start{};
  std::vector<PaymentJob> jobs;
};

class ParallelAcceptor {
 public:
  // `threads` extra threads (0: everything runs on the caller). `key` is the hub's key,
  // `hub` its address; the key is copied and wiped on destruction.
  ParallelAcceptor(unsigned threads, const PrivateKey& key, const Address& hub);
  ~ParallelAcceptor();
  ParallelAcceptor(const ParallelAcceptor&) = delete;
  ParallelAcceptor& operator=(const ParallelAcceptor&) = delete;

  // Validates (channel_accept as the hub, then policy_hub_countersigns without requests:
  // a Payment to the hub passes, any other reason is NotRequested) and countersigns every job of every run; the
  // runs are spread over the pool and the calling thread. Returns when all are done. A
  // run stops at its first refused update (later ones keep status BadArgs).
  void run(std::vector<ChannelRun>& runs);

  unsigned threads() const { return static_cast<unsigned>(workers_.size()); }

 private:
  void work(Signer& signer);
  void process(Signer& signer, ChannelRun& r) const;

  PrivateKey key_;
  ChannelContext ctx_;
  Signer caller_signer_;
  std::vector<std::unique_ptr<Signer>> signers_;
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::vector<ChannelRun>* runs_ = nullptr;
  size_t next_ = 0, busy_ = 0;
  uint64_t generation_ = 0;
  bool stop_ = false;
};

}  // namespace picopay::hub
