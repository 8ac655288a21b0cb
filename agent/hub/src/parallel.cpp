#include "parallel.hpp"

#include "picopay/hex.hpp"
#include "picopay/policy.hpp"

namespace picopay::hub {

ParallelAcceptor::ParallelAcceptor(unsigned threads, const PrivateKey& key, const Address& hub)
    : key_(key), ctx_{hub} {
  (void)caller_signer_.init();
  for (unsigned i = 0; i < threads; ++i) {
    signers_.push_back(std::make_unique<Signer>());
    (void)signers_.back()->init();
  }
  for (unsigned i = 0; i < threads; ++i) {
    Signer* s = signers_[i].get();
    workers_.emplace_back([this, s] { work(*s); });
  }
}

ParallelAcceptor::~ParallelAcceptor() {
  {
    std::lock_guard<std::mutex> lk(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& t : workers_) t.join();
  secure_wipe(&key_, sizeof key_);
}

void ParallelAcceptor::process(Signer& signer, ChannelRun& r) const {
  // Payments never touch the thread set; an empty one is enough.
  const ThreadSet none{nullptr, 0, 0, nullptr};
  ChannelState prev = r.start;
  for (PaymentJob& j : r.jobs) {
    j.prev = prev;
    j.status = channel_accept(ctx_, signer, Party::Hub, prev, none, j.update, j.next, j.hash);
    if (j.status == Status::Ok) {
      // The signing policy (docs/signing-policy.md): a Payment to the hub is always fine;
      // anything else the hub did not request (none here: requests are the serial pass's).
      HubPolicyInput in{};
      in.requests = nullptr;
      in.requestCount = 0;
      in.rate.known = false;
      in.chain.known = false;
      in.limits = policy_limits_default();
      j.status = policy_hub_countersigns(in, prev, j.update);
    }
    if (j.status == Status::Ok) j.status = signer.sign_eth(key_, j.hash, j.sigHub);
    if (j.status != Status::Ok) return;
    prev = j.next;
  }
}

void ParallelAcceptor::work(Signer& signer) {
  uint64_t seen = 0;
  std::unique_lock<std::mutex> lk(mu_);
  while (true) {
    cv_.wait(lk, [&] { return stop_ || generation_ != seen; });
    if (stop_) return;
    seen = generation_;
    while (runs_ != nullptr && next_ < runs_->size()) {
      ChannelRun& r = (*runs_)[next_++];
      ++busy_;
      lk.unlock();
      process(signer, r);
      lk.lock();
      --busy_;
    }
    done_cv_.notify_all();
  }
}

void ParallelAcceptor::run(std::vector<ChannelRun>& runs) {
  if (runs.empty()) return;
  if (workers_.empty() || runs.size() == 1) {
    for (ChannelRun& r : runs) process(caller_signer_, r);
    return;
  }
  std::unique_lock<std::mutex> lk(mu_);
  runs_ = &runs;
  next_ = 0;
  ++generation_;
  cv_.notify_all();
  // The caller works too.
  while (next_ < runs.size()) {
    ChannelRun& r = runs[next_++];
    lk.unlock();
    process(caller_signer_, r);
    lk.lock();
  }
  done_cv_.wait(lk, [&] { return busy_ == 0; });
  runs_ = nullptr;
}

}  // namespace picopay::hub
