// Secrets in files (see secret_file.hpp).
#include "picopay/agent/secret_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace picopay::agent {

namespace {
// False with the one-line refusal if `mode` lets group or others in.
bool mode_private(unsigned mode, const std::string& path, const std::string& what, std::string& err) {
  mode &= 07777u;
  if ((mode & 077u) == 0) return true;
  char m[8];
  std::snprintf(m, sizeof m, "%04o", mode);
  err = what + " and is readable by group/others (mode " + m + "): run chmod 600 " + path;
  return false;
}
}  // namespace

bool secret_file_private(const std::string& path, const std::string& what, std::string& err) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) {
    err = "cannot stat " + path + ": " + std::strerror(errno);
    return false;
  }
  return mode_private(static_cast<unsigned>(st.st_mode), path, what, err);
}

bool secret_file_read(const std::string& path, std::string& out, std::string& err) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = "cannot read password file " + path + ": " + std::strerror(errno);
    return false;
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    err = "password file " + path + " is not a regular file";
    return false;
  }
  if (!mode_private(static_cast<unsigned>(st.st_mode), path, "password file " + path + " holds a password", err)) {
    close(fd);
    return false;
  }
  std::string text;
  char buf[512];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > 65536) break;  // a password, not a document
  }
  std::memset(buf, 0, sizeof buf);
  close(fd);
  size_t nl = text.find('\n');
  std::string line = text.substr(0, nl);
  if (!line.empty() && line.back() == '\r') line.pop_back();
  if (!text.empty()) std::memset(&text[0], 0, text.size());
  if (line.empty()) {
    err = "password file " + path + " is empty (the password is its first line)";
    return false;
  }
  out = std::move(line);
  return true;
}

bool secret_file_write(const std::string& path, const std::string& text, std::string& err) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || fchmod(fd, 0600) != 0 || ftruncate(fd, 0) != 0) {
    err = "cannot write " + path + ": " + std::strerror(errno);
    if (fd >= 0) close(fd);
    return false;
  }
  size_t off = 0;
  while (off < text.size()) {
    ssize_t n = write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      err = "cannot write " + path + ": " + std::strerror(errno);
      close(fd);
      return false;
    }
    off += static_cast<size_t>(n);
  }
  if (close(fd) != 0) {
    err = "cannot write " + path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

}  // namespace picopay::agent
