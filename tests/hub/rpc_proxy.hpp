// A JSON-RPC proxy on 127.0.0.1 for hub tests: forwards each HTTP POST to the dev chain
// (libcurl), and while held keeps every request unanswered until released: a chain that
// hangs. Counts the requests it holds, by JSON-RPC method. Header only.
#pragma once

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace picopay::testsupport {

class RpcProxy {
 public:
  explicit RpcProxy(std::string upstream) : upstream_(std::move(upstream)) {}
  ~RpcProxy() { stop(); }

  bool start() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return false;
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0) return false;
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] { accept_loop(); });
    return true;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      if (stopped_) return;
      stopped_ = true;
      held_ = false;
      for (int c : conns_) ::shutdown(c, SHUT_RDWR);
    }
    cv_.notify_all();
    if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);
    if (accept_.joinable()) accept_.join();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // While held, requests (of these JSON-RPC methods; none named: all) wait unanswered
  // until release() (or stop()).
  void hold(std::set<std::string> methods = {}) {
    std::lock_guard<std::mutex> lk(mu_);
    held_ = true;
    methods_ = std::move(methods);
  }
  void release() {
    {
      std::lock_guard<std::mutex> lk(mu_);
      held_ = false;
    }
    cv_.notify_all();
  }
  // Requests that arrived while held, by JSON-RPC method.
  size_t held_requests(const std::string& method = "") {
    std::lock_guard<std::mutex> lk(mu_);
    if (method.empty()) {
      size_t n = 0;
      for (const auto& kv : held_count_) n += kv.second;
      return n;
    }
    auto it = held_count_.find(method);
    return it == held_count_.end() ? 0 : it->second;
  }

 private:
  void accept_loop() {
    while (true) {
      int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      std::lock_guard<std::mutex> lk(mu_);
      if (stopped_) {
        ::close(c);
        return;
      }
      conns_.push_back(c);
      threads_.emplace_back([this, c] { serve(c); });
    }
  }

  static size_t write_cb(char* p, size_t s, size_t n, void* ud) {
    static_cast<std::string*>(ud)->append(p, s * n);
    return s * n;
  }

  void serve(int c) {
    CURL* curl = curl_easy_init();
    std::string buf;
    char tmp[4096];
    while (true) {
      size_t hdr_end;
      while ((hdr_end = buf.find("\r\n\r\n")) == std::string::npos) {
        ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
        if (n <= 0) goto done;
        buf.append(tmp, static_cast<size_t>(n));
      }
      size_t clen = 0;
      {
        std::string h = buf.substr(0, hdr_end);
        for (auto& ch : h) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        size_t p = h.find("content-length:");
        if (p != std::string::npos) clen = std::strtoul(h.c_str() + p + 15, nullptr, 10);
      }
      while (buf.size() < hdr_end + 4 + clen) {
        ssize_t n = ::recv(c, tmp, sizeof tmp, 0);
        if (n <= 0) goto done;
        buf.append(tmp, static_cast<size_t>(n));
      }
      std::string body = buf.substr(hdr_end + 4, clen);
      buf.erase(0, hdr_end + 4 + clen);
      std::string method;
      {
        size_t p = body.find("\"method\":\"");
        if (p != std::string::npos) {
          size_t e = body.find('"', p + 10);
          method = body.substr(p + 10, e == std::string::npos ? 0 : e - p - 10);
        }
      }
      {
        std::unique_lock<std::mutex> lk(mu_);
        if (held_ && (methods_.empty() || methods_.count(method))) {
          ++held_count_[method];
          cv_.wait_for(lk, std::chrono::seconds(120), [this] { return !held_ || stopped_; });
        }
        if (stopped_) break;
      }
      std::string resp;
      curl_easy_reset(curl);
      struct curl_slist* hdrs = curl_slist_append(nullptr, "Content-Type: application/json");
      curl_easy_setopt(curl, CURLOPT_URL, upstream_.c_str());
      curl_easy_setopt(curl, CURLOPT_HTTPHEADER, hdrs);
      curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.c_str());
      curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
      curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, write_cb);
      curl_easy_setopt(curl, CURLOPT_WRITEDATA, &resp);
      curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(curl, CURLOPT_NOPROXY, "*");
      curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, 60000L);
      const CURLcode rc = curl_easy_perform(curl);
      curl_slist_free_all(hdrs);
      std::string out = rc == CURLE_OK ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 502 Bad Gateway\r\n";
      out += "Content-Type: application/json\r\nContent-Length: " + std::to_string(resp.size()) + "\r\n\r\n" + resp;
      size_t off = 0;
      while (off < out.size()) {
        ssize_t n = ::send(c, out.data() + off, out.size() - off, MSG_NOSIGNAL);
        if (n <= 0) goto done;
        off += static_cast<size_t>(n);
      }
    }
  done:
    curl_easy_cleanup(curl);
    std::lock_guard<std::mutex> lk(mu_);
    for (size_t i = 0; i < conns_.size(); ++i)
      if (conns_[i] == c) conns_.erase(conns_.begin() + static_cast<long>(i));
    ::close(c);
  }

  std::string upstream_;
  int fd_ = -1;
  int port_ = 0;
  std::thread accept_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool held_ = false;
  std::set<std::string> methods_;
  bool stopped_ = false;
  std::map<std::string, size_t> held_count_;
  std::vector<int> conns_;
  std::vector<std::thread> threads_;
};

}  // namespace picopay::testsupport
