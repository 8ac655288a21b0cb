// A real mosquitto broker for tests: the shipped limits and ACL (packaging/mosquitto/),
// client ids bound to usernames when there are users, free 127.0.0.1 port, password
// file (mosquitto_passwd), ACL file, optional TLS listener with certificates generated
// by openssl, persistence in its own directory; waits until it accepts connections;
// killed (SIGKILL) in the destructor. kill9()/restart() for crash tests (same ports,
// same files).
#pragma once

#include <string>
#include <vector>

#include "support/process.hpp"

namespace picopay::testsupport {

struct BrokerUser {
  std::string name;
  std::string password;
};

struct BrokerOptions {
  std::vector<BrokerUser> users;  // empty: anonymous access allowed
  std::string acl;                // ACL file text ("" = no ACL file; see picopay_acl())
  bool tls = false;               // also open a TLS listener (tls_port(), ca_file())
  std::string dir;                // working dir ("" = a fresh temp dir, removed at the end)
  // mosquitto.conf lines written after the shipped limits (a later line wins), e.g.
  // "max_queued_messages 100000\nautosave_interval 1" to reproduce an older setup.
  std::string extra_conf;
  // use_username_as_clientid on every listener (as shipped) when there are users; false
  // only to show what an unhardened broker allows.
  bool client_id_is_username = true;
  bool keep_dir = false;          // keep the temp dir (debugging)
};

// The shipped ACL (packaging/mosquitto/picopay.acl, docs/mqtt-protocol.md "Broker
// security") with `hub_user` as the hub's username: a device whose username is its
// lowercase 0x address may publish only under its own channel topics, its status and
// thread updates to others; the hub may use everything under picopay/v1/.
std::string picopay_acl(const std::string& hub_user);

class Broker {
 public:
  explicit Broker(BrokerOptions opts = {});
  ~Broker();
  Broker(const Broker&) = delete;
  Broker& operator=(const Broker&) = delete;

  // Writes the files, starts mosquitto, waits (bounded) until its ports accept.
  bool start(std::string& err);
  void kill9();                    // SIGKILL (in-memory state since the last autosave is lost)
  void stop();                     // SIGTERM (saves persistence), waits
  bool restart(std::string& err);  // start again on the same ports with the same files

  int port() const { return port_; }
  int tls_port() const { return tls_port_; }
  std::string ca_file() const { return dir_ + "/ca.crt"; }
  std::string dir() const { return dir_; }
  std::string log_file() const { return dir_ + "/mosquitto.log"; }
  bool running() { return proc_.running(); }
  pid_t pid() const { return proc_.pid(); }
  std::string persistence_file() const { return dir_ + "/mosquitto.db"; }

 private:
  bool write_config(std::string& err);
  bool make_certs(std::string& err);
  bool launch(std::string& err);
  BrokerOptions opts_;
  std::string dir_;
  bool own_dir_ = false;
  int port_ = -1;
  int tls_port_ = -1;
  Process proc_;
};

}  // namespace picopay::testsupport
