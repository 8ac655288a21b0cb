// libFuzzer target: JSON-RPC responses as the chain adapter receives them
// (agent/chain rpc.hpp: RpcClient::call's envelope handling and every typed wrapper:
// quantities, blocks, receipts, logs, eth_call data, code), end to end through libcurl
// from an HTTP server on 127.0.0.1 inside this process that answers with the input.
// Input: byte 0 picks the method; the rest is the HTTP response body (the node's JSON).
// The answers then go where the programs send them: logs to decode_event, eth_call data
// to the ABI decoder and revert_reason.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <string>
#include <thread>

#include "fuzz_util.hpp"
#include "picopay/chain/abi.hpp"
#include "picopay/chain/events.hpp"
#include "picopay/chain/rpc.hpp"

using namespace picopay;
using namespace picopay::chain;

namespace {

std::mutex g_mu;
std::string g_body;  // the next response body

// Answers every HTTP request on a connection with g_body (keep-alive).
void serve(int c) {
  std::string buf;
  char tmp[8192];
  for (;;) {
    size_t hdr_end;
    while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = read(c, tmp, sizeof tmp);
      if (n <= 0) { close(c); return; }
      buf.append(tmp, static_cast<size_t>(n));
    }
    size_t clen = 0;
    size_t p = buf.find("Content-Length:");
    if (p == std::string::npos) p = buf.find("content-length:");
    if (p != std::string::npos && p < hdr_end) clen = std::strtoul(buf.c_str() + p + 15, nullptr, 10);
    while (buf.size() < hdr_end + 4 + clen) {
      ssize_t n = read(c, tmp, sizeof tmp);
      if (n <= 0) { close(c); return; }
      buf.append(tmp, static_cast<size_t>(n));
    }
    buf.erase(0, hdr_end + 4 + clen);
    std::string body;
    {
      std::lock_guard<std::mutex> l(g_mu);
      body = g_body;
    }
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                       std::to_string(body.size()) + "\r\n\r\n" + body;
    size_t off = 0;
    while (off < resp.size()) {
      ssize_t n = write(c, resp.data() + off, resp.size() - off);
      if (n <= 0) { close(c); return; }
      off += static_cast<size_t>(n);
    }
  }
}

int start_server() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  if (s < 0) std::abort();
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || listen(s, 16) != 0) std::abort();
  socklen_t len = sizeof a;
  if (getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) std::abort();
  std::thread([s] {
    for (;;) {
      int c = accept(s, nullptr, nullptr);
      if (c < 0) continue;
      std::thread(serve, c).detach();
    }
  }).detach();
  return ntohs(a.sin_port);
}

RpcClient& client() {
  static RpcClient* rpc = [] {
    const int port = start_server();
    return new RpcClient("http://127.0.0.1:" + std::to_string(port), 10000);
  }();
  return *rpc;
}

void events_of(const std::vector<Log>& logs) {
  for (const Log& l : logs) (void)decode_event(l);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  RpcClient& rpc = client();
  {
    std::lock_guard<std::mutex> l(g_mu);
    g_body.assign(reinterpret_cast<const char*>(data + 1), size - 1);
  }
  const Address who = picopay_fuzz::contract_addr();
  switch (data[0] % 13) {
    case 0: (void)rpc.chain_id(); break;
    case 1: (void)rpc.block_number(); break;
    case 2: (void)rpc.balance(who); break;
    case 3: (void)rpc.transaction_count(who); break;
    case 4: (void)rpc.block_by_number(7); break;
    case 5: (void)rpc.max_priority_fee(); break;
    case 6: (void)rpc.estimate_gas(who, &who, U256::from_u64(1), {1, 2, 3}); break;
    case 7:
      if (auto r = rpc.eth_call(who, {0xde, 0xad})) {
        AbiDecoder d(*r);
        for (size_t i = 0; i < 8; ++i) { (void)d.u256(i); (void)d.string(i); }
        (void)revert_reason(*r);
      }
      break;
    case 8: (void)rpc.send_raw_transaction({0x02, 0xc0}); break;
    case 9:
      if (auto r = rpc.receipt(Hash32{})) events_of(r->logs);
      break;
    case 10:
      if (auto r = rpc.logs(who, 1, 100)) events_of(*r);
      break;
    case 11: (void)rpc.code(who); break;
    case 12: (void)rpc.snapshot(); break;
  }
  return 0;
}
