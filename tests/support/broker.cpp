#include "support/broker.hpp"

#include "picopay/broker_files.hpp"

#include <pwd.h>
#include <unistd.h>

namespace picopay::testsupport {

std::string picopay_acl(const std::string& hub_user) {
  // The shipped ACL (packaging/mosquitto/picopay.acl) with its hub username replaced.
  std::string a = broker_files::kAcl;
  const std::string line = "\nuser hub\n";
  size_t at = a.find(line);
  if (at != std::string::npos) a.replace(at, line.size(), "\nuser " + hub_user + "\n");
  return a;
}

Broker::Broker(BrokerOptions opts) : opts_(std::move(opts)) {}

Broker::~Broker() {
  proc_.kill9();
  if (own_dir_ && !opts_.keep_dir) remove_tree(dir_);
}

bool Broker::make_certs(std::string& err) {
  const std::string d = dir_ + "/";
  const std::string log = d + "openssl.log";
  write_file(d + "san.cnf", "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
  std::vector<std::vector<std::string>> cmds = {
      {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       d + "ca.key", "-out", d + "ca.crt", "-days", "2", "-subj", "/CN=picopay test CA"},
      {"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout",
       d + "server.key", "-out", d + "server.csr", "-subj", "/CN=127.0.0.1"},
      {"openssl", "x509", "-req", "-in", d + "server.csr", "-CA", d + "ca.crt", "-CAkey", d + "ca.key",
       "-CAcreateserial", "-out", d + "server.crt", "-days", "2", "-extfile", d + "san.cnf"},
  };
  for (auto& c : cmds) {
    if (run_command(c, log) != 0) {
      err = "openssl failed: " + read_file(log);
      return false;
    }
  }
  return true;
}

bool Broker::write_config(std::string& err) {
  std::string c;
  struct passwd* pw = getpwuid(getuid());
  if (pw && pw->pw_name) c += std::string("user ") + pw->pw_name + "\n";
  c += "per_listener_settings false\n";
  // The shipped limits (packaging/mosquitto/conf.d/picopay-limits.conf), then the
  // test's own overrides (a later line wins).
  c += broker_files::kLimitsConf;
  c += "\n" + opts_.extra_conf + "\n";
  c += "persistence true\n";
  c += "persistence_location " + dir_ + "/\n";
  c += "log_dest file " + dir_ + "/mosquitto.log\n";
  c += "log_type error\nlog_type warning\nlog_type notice\nlog_type information\n";
  if (opts_.users.empty()) {
    c += "allow_anonymous true\n";
  } else {
    c += "allow_anonymous false\n";
    c += "password_file " + dir_ + "/passwd\n";
    std::string plain;
    for (auto& u : opts_.users) plain += u.name + ":" + u.password + "\n";
    if (!write_file(dir_ + "/passwd", plain)) {
      err = "cannot write passwd";
      return false;
    }
    // Hash the plain text file in place (mosquitto_passwd -U); one process for all users.
    if (run_command({"mosquitto_passwd", "-U", dir_ + "/passwd"}, dir_ + "/passwd.log") != 0) {
      err = "mosquitto_passwd failed: " + read_file(dir_ + "/passwd.log");
      return false;
    }
  }
  if (!opts_.acl.empty()) {
    if (!write_file(dir_ + "/acl", opts_.acl)) {
      err = "cannot write acl";
      return false;
    }
    c += "acl_file " + dir_ + "/acl\n";
  }
  // Client ids bound to usernames (a listener option: after each listener line), as
  // shipped; only with authentication (a client without a username is refused).
  const std::string bind_ids =
      opts_.users.empty() || !opts_.client_id_is_username ? "" : "use_username_as_clientid true\n";
  c += "listener " + std::to_string(port_) + " 127.0.0.1\n" + bind_ids;
  if (opts_.tls) {
    c += "listener " + std::to_string(tls_port_) + " 127.0.0.1\n" + bind_ids;
    c += "cafile " + dir_ + "/ca.crt\n";
    c += "certfile " + dir_ + "/server.crt\n";
    c += "keyfile " + dir_ + "/server.key\n";
  }
  if (!write_file(dir_ + "/mosquitto.conf", c)) {
    err = "cannot write mosquitto.conf";
    return false;
  }
  return true;
}

bool Broker::launch(std::string& err) {
  if (!proc_.start({"mosquitto", "-c", dir_ + "/mosquitto.conf"}, dir_ + "/stdout.log")) {
    err = "cannot start mosquitto";
    return false;
  }
  for (int i = 0; i < 250; ++i) {
    if (!proc_.running()) {
      err = "mosquitto exited: " + read_file(dir_ + "/stdout.log") + read_file(log_file());
      return false;
    }
    if (wait_port_open(port_, 20) && (!opts_.tls || wait_port_open(tls_port_, 20))) return true;
  }
  err = "mosquitto did not open its ports: " + read_file(log_file());
  return false;
}

bool Broker::start(std::string& err) {
  if (opts_.dir.empty()) {
    dir_ = make_temp_dir("picopay-broker");
    own_dir_ = true;
    if (dir_.empty()) {
      err = "mkdtemp failed";
      return false;
    }
  } else {
    dir_ = opts_.dir;
    run_command({"mkdir", "-p", dir_});
  }
  port_ = free_port();
  tls_port_ = opts_.tls ? free_port() : -1;
  if (port_ <= 0 || (opts_.tls && (tls_port_ <= 0 || tls_port_ == port_))) {
    err = "no free port";
    return false;
  }
  if (opts_.tls && !make_certs(err)) return false;
  if (!write_config(err)) return false;
  return launch(err);
}

void Broker::kill9() { proc_.kill9(); }

void Broker::stop() { proc_.terminate(10000); }

bool Broker::restart(std::string& err) {
  proc_.kill9();
  // The port may linger briefly after the kill; mosquitto sets SO_REUSEADDR, so retry
  // a few times if it fails to bind.
  for (int attempt = 0; attempt < 20; ++attempt) {
    if (launch(err)) return true;
    usleep(100 * 1000);
  }
  return false;
}

}  // namespace picopay::testsupport
