// picopay keyfile: a secp256k1 private key sealed under a passphrase (libsodium).
//
// Key derivation: Argon2id v1.3 (RFC 9106) via libsodium crypto_pwhash with a random
// 16-byte salt. Default cost: crypto_pwhash_OPSLIMIT_INTERACTIVE (2 passes) and
// crypto_pwhash_MEMLIMIT_INTERACTIVE (64 MiB) — libsodium's recommendation for keys
// unlocked at program start on a gateway-class device (well under a second, fits in a
// small Linux box's RAM). KdfStrength::Moderate (OPSLIMIT_MODERATE = 3 passes,
// MEMLIMIT_MODERATE = 256 MiB: each guess costs an attacker several times more, and so
// does each unlock, ~1 s) is available for machines that can afford the memory.
// Encryption: crypto_secretbox_easy (XSalsa20-Poly1305) with a random 24-byte nonce and
// the 32-byte Argon2id output as key. The KDF parameters and salt are inputs of the key
// derivation, so altering any of them (like altering the nonce or ciphertext) makes the
// Poly1305 tag fail to verify.
//
// File format (kKeyfileSize = 108 bytes, integers little-endian):
//   offset  0   6 bytes  magic "PPKEY1"
//   offset  6   1 byte   format version = 1
//   offset  7   1 byte   KDF algorithm = 2 (crypto_pwhash_ALG_ARGON2ID13)
//   offset  8   4 bytes  opslimit (Argon2 passes)
//   offset 12   8 bytes  memlimit in bytes
//   offset 20  16 bytes  salt (crypto_pwhash_SALTBYTES)
//   offset 36  24 bytes  nonce (crypto_secretbox_NONCEBYTES)
//   offset 60  48 bytes  crypto_secretbox_easy(private key 32 bytes): MAC 16 || ct 32
//
// Every secret buffer (derived key, plaintext copies, passphrase copies) is wiped with
// sodium_memzero before returning; sodium_init() runs once per process (thread-safe).
#pragma once

#include <cstddef>
#include <cstdint>

#include "picopay/status.hpp"
#include "picopay/types.hpp"

namespace picopay {

constexpr size_t kKeyfileSize = 108;
constexpr uint8_t kKeyfileVersion = 1;

// Argon2id cost of a new key file (reading always uses the parameters in the file).
enum class KdfStrength : uint8_t {
  Interactive = 0,  // OPSLIMIT_INTERACTIVE (2) / MEMLIMIT_INTERACTIVE (64 MiB): default
  Moderate = 1,     // OPSLIMIT_MODERATE (3) / MEMLIMIT_MODERATE (256 MiB)
};

// Creates `path` holding `key` sealed under `passphrase[0..passphrase_len)` (any bytes;
// at least 1 byte). Written to a temporary file in the same directory (mode 0600,
// mkstemp), fsynced, then published without ever replacing an existing file
// (renameat2(RENAME_NOREPLACE), falling back to link(2) + unlink(2)), then the directory
// is fsynced. On any error no file is left at `path` or in its place.
// Errors: IoError if `path` already exists (refuses to overwrite) or on any file-system
// failure (missing directory, permissions, write/fsync), or if libsodium fails to
// initialise or Argon2id cannot get its memory; OutOfBounds if passphrase_len is 0 or
// exceeds crypto_pwhash_PASSWD_MAX; BadArgs for a null path/passphrase.
[[nodiscard]] Status keyfile_write(const char* path, const PrivateKey& key, const char* passphrase,
                                   size_t passphrase_len,
                                   KdfStrength strength = KdfStrength::Interactive) noexcept;

// Opens the key file at `path` with `passphrase[0..len)` into `out`.
// Errors: IoError if the file is missing or unreadable (or libsodium fails to initialise,
// or Argon2id cannot get its memory); Corrupt if the file is malformed (size other than
// kKeyfileSize, wrong magic, unknown KDF algorithm, KDF parameters outside libsodium's
// [MIN, SENSITIVE] range) and also when the Poly1305 tag does not verify, which means
// a wrong passphrase OR a tampered file — deliberately indistinguishable;
// BadVersion if the version byte is not kKeyfileVersion; BadArgs for null arguments.
// On any error `out` is zeroed.
[[nodiscard]] Status keyfile_read(const char* path, const char* passphrase, size_t len,
                                  PrivateKey& out) noexcept;

// Obtains a passphrase into `out[0..cap)`, NUL-terminated, length (without the NUL) in
// `*len`:
//   1. from the environment variable PICOPAY_PASSPHRASE if it is set (`confirm` is then
//      ignored: scripts and CI);
//   2. else, if PICOPAY_PASSPHRASE_FILE is set and non-empty, from that file (a systemd
//      credential: LoadCredential= and $CREDENTIALS_DIRECTORY, see docs/install.md;
//      `confirm` ignored): its whole content minus one trailing "\n" or "\r\n". The file
//      must be a regular file with no permission bits for "other" (mode & 0007 == 0);
//   3. else from the controlling terminal /dev/tty: prompts "Passphrase: " (and, if
//      `confirm`, "Confirm passphrase: ") with echo off (termios, restored afterwards),
//      reads one line each; a trailing "\r" is dropped. While prompting, SIGINT, SIGQUIT,
//      SIGTERM, SIGHUP, SIGTSTP, SIGTTIN and SIGTTOU (unless ignored) are caught: the
//      terminal and the previous signal dispositions are restored and the signal is
//      re-raised (so Ctrl-C still ends the program, with echo back on); if the program
//      survives it (its own handler, or SIGTSTP then SIGCONT) the call returns IoError.
//      Process-wide handlers are swapped meanwhile: call it from one thread, at startup.
// Errors: IoError if the passphrase file cannot be opened or read, is not a regular file
// or is accessible by "other"; IoError if there is no controlling terminal (CI, daemons: never blocks on
// stdin) or the terminal read fails or hits end of file; BufferTooSmall if the
// passphrase needs more than cap - 1 bytes (`*len` = the needed cap: its length + 1;
// the rest of a typed line is read and discarded); OutOfBounds for an empty
// passphrase; BadArgs if `confirm` and the two typed passphrases differ, or null
// arguments / cap == 0. On any error `out[0..cap)` is wiped.
[[nodiscard]] Status passphrase_obtain(char* out, size_t cap, size_t* len, bool confirm) noexcept;

}  // namespace picopay
