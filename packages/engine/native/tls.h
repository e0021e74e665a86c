// Mutual TLS for the loop: the OpenSSL objects behind RAII handles, the immutable security snapshot JavaScript hands
// over (both SSL_CTXs, the mode, the policy), and one TLS connection driven over the loop's own byte queues.
//
// Which OpenSSL: the one node itself links. Node 20 carries OpenSSL 3.0.x statically and exports its symbols; the
// addon is compiled against the headers node ships with that copy (node-gyp puts <nodedir>/include/node, which holds
// openssl/, before the system include path) and is NOT linked with -lssl/-lcrypto: its undefined SSL_* and X509_*
// symbols resolve against the node binary when it is loaded (binding.gyp links with -z now, so a node without them
// fails the load, and the engine reports itself unavailable, instead of failing at the first call). The headers'
// major version is checked here at build time and the running library's major.minor at load (opensslMismatch).
#pragma once

#include <openssl/bio.h>
#include <openssl/opensslv.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <string>

#include "authz.h"
#include "buffers.h"
#include "engine.h"

static_assert(OPENSSL_VERSION_MAJOR == 3, "the engine is written for OpenSSL 3 (the one node 18+ links)");

namespace meshport {

struct SslCtxFree {
  void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
};
struct SslFree {
  void operator()(SSL* p) const { SSL_free(p); }
};
struct X509Free {
  void operator()(X509* p) const { X509_free(p); }
};
struct X509StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct BioFree {
  void operator()(BIO* p) const { BIO_free(p); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using X509StorePtr = std::unique_ptr<X509_STORE, X509StoreFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// Why the OpenSSL this process runs cannot serve the addon ("" when it can): another major.minor than the headers.
std::string opensslMismatch();

// TlsMode of security.ts.
enum class TlsMode : uint8_t { Off, Permissive, Strict };

// HandshakeFailure of security.ts, in its order; kHandshakeFailureNames spells them.
enum class HandshakeFailure : uint8_t { NoClientCert, Untrusted, Expired, WrongIdentity, NoIdentity, PlaintextRefused, Protocol, Timeout };
inline constexpr size_t kHandshakeFailures = kHandshakeFailureKinds;  // engine.h sizes the counters by it
inline constexpr const char* kHandshakeFailureNames[kHandshakeFailures] = {
    "no-client-cert", "untrusted", "expired", "wrong-identity", "no-identity", "plaintext-refused", "protocol", "timeout"};

// What setSecurity() takes (RouterSecurity of security.ts), as parsed from JavaScript.
struct SecurityInput {
  TlsMode mode = TlsMode::Off;
  std::string certChain;
  std::string key;
  std::string trustBundle;
  std::string identity;
  AuthzPolicy policy;
};

// One generation of credentials, mode and policy, immutable once built. New connections take the current one's
// contexts; a connection keeps the SSL it started with (which holds its SSL_CTX) however often this is replaced.
struct SecuritySnapshot {
  TlsMode mode = TlsMode::Off;
  std::string identity;
  AuthzPolicy policy;
  SslCtxPtr server;  // inbound: TLS 1.3, a client certificate required and verified
  SslCtxPtr client;  // outbound: TLS 1.3, ours presented, the provider's verified (and its identity, per connection)
};

// Builds both contexts from PEM text. Throws std::runtime_error saying what is wrong (a PEM that does not parse, no
// certificate, a key that does not match it, an empty trust bundle) with OpenSSL's reason.
std::shared_ptr<const SecuritySnapshot> buildSecurity(SecurityInput in);

// The first spiffe:// URI in a certificate's SAN; false when it has none.
bool spiffeIdentity(X509* cert, std::string& out);

// One TLS connection. The SSL reads ciphertext from `in` and writes it to `out` (a BIO of our own over the two
// queues): the loop moves bytes between them and the socket, so a TLS connection is read, written, paused and
// closed by the same rules as a plaintext one, and bytes already read elsewhere (an adopted socket's head) are
// simply put in `in`.
class TlsConn {
 public:
  // `expect`: the identity the peer's certificate must carry (outbound); empty: any spiffe:// identity (inbound).
  TlsConn(SSL_CTX* ctx, bool server, std::string expect);
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  ByteQueue in;   // ciphertext read from the socket, not yet taken by OpenSSL
  ByteQueue out;  // ciphertext OpenSSL made, not yet written to the socket
  bool eof = false;  // the socket's read side ended: no more ciphertext will come
  int64_t deadline = 0;  // ms: the handshake must be done by then

  bool valid() const { return ssl_ != nullptr; }
  bool open() const { return open_; }
  bool server() const { return server_; }

  enum class Step : uint8_t { Done, Again, Failed };
  // Advances the handshake with what `in` holds. Done: the peer's certificate verified and its identity is peer().
  Step handshake();
  // After Failed: why (HandshakeFailure) and OpenSSL's words for it.
  HandshakeFailure failure() const { return failure_; }
  const std::string& failureText() const { return failureText_; }
  const std::string& peer() const { return peer_; }

  // Decrypts into [buf, buf+cap): > 0 bytes; 0 when `in` holds no whole record (more must be read); -1 when the
  // stream ended (close_notify, or the socket's end with none); -2 when it broke (error() says how).
  int read(uint8_t* buf, size_t cap);
  // Encrypts up to `len` bytes into `out`; returns how many were taken, -1 when the connection broke.
  int write(const uint8_t* p, size_t len);
  // Queues a close_notify (once).
  void close();
  bool closing() const { return closeSent_; }
  const std::string& error() const { return failureText_; }

  void noteFailure(HandshakeFailure f, std::string text);

 private:
  // The completed handshake's peer, judged as mtls.ts verifyPeer does; false (and the failure noted) when refused.
  bool verifyPeer();

  SslPtr ssl_;
  std::string expect_;
  std::string peer_;
  HandshakeFailure failure_ = HandshakeFailure::Protocol;
  std::string failureText_;
  bool noted_ = false;
  bool server_ = false;
  bool open_ = false;
  bool closeSent_ = false;
};

}  // namespace meshport
