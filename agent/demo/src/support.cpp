#include "picopay/demo/support.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "picopay/agent/secret_file.hpp"
#include "picopay/broker_files.hpp"
#include "picopay/chain/rpc.hpp"
#include "picopay/agent/install.hpp"
#include "picopay/mqtt/protocol.hpp"
#include "picopay/hex.hpp"
#include "picopay/signer.hpp"
#include "picopay/types.hpp"

namespace picopay::demo {

std::string self_dir() { return agent::exe_dir(); }

std::string bin_dir() {
  if (const char* e = std::getenv("PICOPAY_BIN_DIR")) return e;
  return self_dir();
}

int free_port() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    close(fd);
    return -1;
  }
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  int port = ntohs(a.sin_port);
  close(fd);
  return port;
}

bool wait_port(int port, int timeout_ms) {
  for (int waited = 0; waited <= timeout_ms; waited += 50) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(port));
    bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    close(fd);
    if (ok) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return false;
}

bool write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
  return static_cast<bool>(f);
}

std::string read_text(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

bool make_dirs(const std::string& path) {
  std::string cur;
  std::stringstream ss(path);
  std::string part;
  if (!path.empty() && path[0] == '/') cur = "/";
  while (std::getline(ss, part, '/')) {
    if (part.empty()) continue;
    cur += part + "/";
    if (mkdir(cur.c_str(), 0700) != 0 && errno != EEXIST) return false;
  }
  return true;
}

std::string random_key_hex() {
  uint8_t k[32];
  for (;;) {
    if (getrandom(k, sizeof k, 0) != static_cast<ssize_t>(sizeof k)) continue;
    PrivateKey pk{};
    std::memcpy(pk.bytes, k, 32);
    Signer s;
    Address a{};
    if (s.init() == Status::Ok && s.address_of(pk, a) == Status::Ok) break;
  }
  char out[2 + 64 + 1];
  hex_encode(k, sizeof k, out, true);
  secure_wipe(k, sizeof k);
  return out;
}

std::string key_address(const std::string& key_hex) {
  PrivateKey pk{};
  if (private_key_parse(key_hex.c_str(), key_hex.size(), pk) != Status::Ok) return "";
  Signer s;
  Address a{};
  if (s.init() != Status::Ok || s.address_of(pk, a) != Status::Ok) return "";
  return mqtt::topic_address(a);
}

Child::~Child() { stop(3000); }

bool Child::start(const std::vector<std::string>& argv, const std::string& log, bool pipe_stdin, bool pipe_stdout) {
  int inp[2] = {-1, -1}, outp[2] = {-1, -1};
  if (pipe_stdin && pipe2(inp, O_CLOEXEC) != 0) return false;
  if (pipe_stdout && pipe2(outp, O_CLOEXEC) != 0) return false;
  pid_t parent = getpid();
  pid_t p = fork();
  if (p < 0) return false;
  if (p == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() != parent) _exit(127);
    setpgid(0, 0);  // a terminal's Ctrl-C goes to the demo, which stops us in order
    int lf = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (lf >= 0) {
      dup2(lf, 2);
      if (!pipe_stdout) dup2(lf, 1);
    }
    if (pipe_stdout) dup2(outp[1], 1);
    if (pipe_stdin) {
      dup2(inp[0], 0);
    } else {
      int nul = open("/dev/null", O_RDONLY);
      dup2(nul, 0);
    }
    std::vector<char*> av;
    for (const auto& s : argv) av.push_back(const_cast<char*>(s.c_str()));
    av.push_back(nullptr);
    execvp(av[0], av.data());
    std::fprintf(stderr, "exec %s: %s\n", av[0], std::strerror(errno));
    _exit(127);
  }
  pid_ = p;
  status_ = -1;
  if (pipe_stdin) {
    close(inp[0]);
    in_ = inp[1];
  }
  if (pipe_stdout) {
    close(outp[1]);
    out_ = outp[0];
  }
  return true;
}

void Child::close_stdin() {
  if (in_ >= 0) close(in_);
  in_ = -1;
}

bool Child::running() { return wait(0) < 0 && pid_ > 0; }

int Child::wait(int timeout_ms) {
  if (pid_ <= 0) return status_;
  for (int waited = 0;; waited += 20) {
    int st = 0;
    pid_t r = waitpid(pid_, &st, WNOHANG);
    if (r == pid_) {
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      pid_ = -1;
      close_stdin();
      if (out_ >= 0) close(out_);
      out_ = -1;
      return status_;
    }
    if (r < 0) {
      pid_ = -1;
      return status_;
    }
    if (waited >= timeout_ms) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

int Child::stop(int timeout_ms) {
  if (pid_ <= 0) return status_;
  kill(pid_, SIGTERM);
  int s = wait(timeout_ms);
  if (s < 0) {
    kill9();
    return status_;
  }
  return s;
}

void Child::kill9() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  wait(5000);
}

bool MosquittoBroker::start(const std::string& dir, const std::vector<BrokerUser>& users, const std::string& acl,
                            std::string& err, int port) {
  dir_ = dir;
  make_dirs(dir);
  port_ = port > 0 ? port : free_port();
  std::string pw;
  for (const auto& u : users) pw += u.name + ":" + u.password + "\n";
  // Plain text passwords until mosquitto_passwd hashes them: 0600 from the first byte.
  if (!agent::secret_file_write(dir + "/passwd", pw, err)) return false;
  {
    Child c;
    if (!c.start({"mosquitto_passwd", "-U", dir + "/passwd"}, dir + "/passwd.log") || c.wait(30000) != 0) {
      err = "mosquitto_passwd -U failed (see " + dir + "/passwd.log)";
      return false;
    }
  }
  write_text(dir + "/acl", acl);
  chmod((dir + "/acl").c_str(), 0600);
  std::string conf;
  if (geteuid() == 0) conf += "user root\n";  // else mosquitto drops to user mosquitto
  // The shipped limits (packaging/mosquitto/conf.d/picopay-limits.conf).
  conf += broker_files::kLimitsConf;
  conf += "\nallow_anonymous false\n";
  conf += "password_file " + dir + "/passwd\n";
  conf += "acl_file " + dir + "/acl\n";
  conf += "persistence true\n";
  conf += "persistence_location " + dir + "/\n";
  conf += "log_dest file " + dir + "/mosquitto.log\n";
  conf += "log_type error\nlog_type warning\nlog_type notice\n";
  conf += "listener " + std::to_string(port_) + " 127.0.0.1\n";
  // Client ids bound to usernames: nobody takes another's session (a listener option).
  conf += "use_username_as_clientid true\n";
  write_text(dir + "/mosquitto.conf", conf);
  return restart(err);
}

bool MosquittoBroker::restart(std::string& err) {
  const char* paths[] = {"/usr/sbin/mosquitto", "/usr/bin/mosquitto", "mosquitto"};
  std::string exe = "mosquitto";
  for (const char* p : paths)
    if (access(p, X_OK) == 0) {
      exe = p;
      break;
    }
  if (!proc_.start({exe, "-c", dir_ + "/mosquitto.conf"}, dir_ + "/mosquitto.stderr")) {
    err = "cannot start mosquitto";
    return false;
  }
  if (!wait_port(port_, 10000)) {
    err = "mosquitto did not listen on 127.0.0.1:" + std::to_string(port_) + " (see " + dir_ + "/mosquitto.log)";
    return false;
  }
  return true;
}

bool DevChain::start(const std::string& dir, const std::vector<std::string>& keys, std::string& err) {
  // $PICOPAY_DEVCHAIN_JS (run with $PICOPAY_NODE, else node from PATH), else the
  // launcher <data dir>/devchain/devchain.sh (see picopay/agent/install.hpp).
  std::vector<std::string> argv;
  std::string js;
  if (const char* e = std::getenv("PICOPAY_DEVCHAIN_JS"); e && *e) {
    js = e;
    const char* node = std::getenv("PICOPAY_NODE");
    argv = {node && *node ? node : "node", js};
  } else {
    js = agent::data_dir() + "/devchain/devchain.sh";
    if (access(js.c_str(), X_OK) != 0) {
      err = "no dev chain launcher at " + js + " (install picopay's devchain files, or set PICOPAY_DATA_DIR)";
      return false;
    }
    argv = {js};
  }
  for (const char* a : {"--port", "0", "--watch-stdin"}) argv.push_back(a);
  // No --account KEY: a key on a command line is readable by every local user
  // (/proc/<pid>/cmdline). The parties are funded over RPC below instead.
  if (!proc_.start(argv, dir + "/devchain.log", true, true)) {
    err = "cannot start the dev chain (" + js + ")";
    return false;
  }
  std::string line;
  char c;
  for (int waited = 0; waited < 60000;) {
    pollfd p{proc_.stdout_fd(), POLLIN, 0};
    int r = poll(&p, 1, 200);
    if (r > 0) {
      ssize_t n = read(proc_.stdout_fd(), &c, 1);
      if (n <= 0) break;
      if (c == '\n') break;
      line.push_back(c);
    } else {
      waited += 200;
      if (!proc_.running()) break;
    }
  }
  size_t u = line.find("\"url\":\"");
  if (u == std::string::npos) {
    err = "the dev chain did not start (see " + dir + "/devchain.log)";
    return false;
  }
  u += 7;
  url_ = line.substr(u, line.find('"', u) - u);
  chain::RpcClient rpc(url_);
  for (const auto& k : keys) {
    const std::string a = key_address(k);
    if (a.empty()) {
      err = "dev chain: bad account key";
      return false;
    }
    auto r = rpc.call("evm_setAccountBalance", "[\"" + a + "\",\"0x3635c9adc5dea00000\"]");  // 1000 ETH
    if (!r) {
      err = "dev chain: funding " + a + ": " + r.error().to_string();
      return false;
    }
  }
  return true;
}

}  // namespace picopay::demo
