// The engine's TLS (tls.h): contexts built from PEM text, the verify callback that checks the peer's identity, and
// one connection driven over the loop's byte queues through a BIO of our own.

#include "tls.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <climits>
#include <cstring>
#include <stdexcept>
#include <vector>

namespace meshport {

namespace {

// OpenSSL's reason for the oldest error on this thread's queue (then the queue is emptied), or `fallback`.
std::string opensslReason(const char* fallback) {
  const unsigned long err = ERR_peek_error();
  std::string out = fallback;
  if (err != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    out = buf;
  }
  ERR_clear_error();
  return out;
}

// ---- the BIO over TlsConn::in / TlsConn::out

int queueRead(BIO* b, char* buf, int len) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (t == nullptr || len <= 0) return 0;
  if (t->in.empty()) {
    if (t->eof) return 0;
    BIO_set_retry_read(b);
    return -1;
  }
  const size_t n = t->in.size() < size_t(len) ? t->in.size() : size_t(len);
  std::memcpy(buf, t->in.data(), n);
  t->in.consume(n);
  return int(n);
}

int queueWrite(BIO* b, const char* buf, int len) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(b));
  BIO_clear_retry_flags(b);
  if (t == nullptr || len <= 0) return 0;
  t->out.append(buf, size_t(len));
  return len;
}

long queueCtrl(BIO* b, int cmd, long, void*) {
  auto* t = static_cast<TlsConn*>(BIO_get_data(b));
  switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_PENDING: return t != nullptr ? long(t->in.size()) : 0;
    case BIO_CTRL_WPENDING: return t != nullptr ? long(t->out.size()) : 0;
    case BIO_CTRL_EOF: return t != nullptr && t->eof && t->in.empty() ? 1 : 0;
    default: return 0;
  }
}

int queueCreate(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

int queueDestroy(BIO* b) {
  BIO_set_data(b, nullptr);
  return 1;
}

BIO_METHOD* queueMethod() {
  // Made once per process and kept: every connection's BIO points at it.
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "meshport byte queues");
    if (m != nullptr) {
      BIO_meth_set_read(m, queueRead);
      BIO_meth_set_write(m, queueWrite);
      BIO_meth_set_ctrl(m, queueCtrl);
      BIO_meth_set_create(m, queueCreate);
      BIO_meth_set_destroy(m, queueDestroy);
    }
    return m;
  }();
  return method;
}

// ---- verification
//
// As the TypeScript engine (packages/router/src/mtls.ts verifyPeer) does it: the handshake completes whatever the
// peer's certificate, and is then judged in a fixed order (a certificate at all, the chain, a spiffe:// identity,
// outbound the identity the registry published), so both engines refuse the same peers for the same reasons and
// the peer sees the same thing (a completed handshake, then the connection closed).

// Lets the handshake complete: the verdict is read afterwards (SSL_get_verify_result), as Node's
// rejectUnauthorized: false leaves it to verifyPeer.
int completeHandshake(int, X509_STORE_CTX*) { return 1; }

// The names Node gives verify results (socket.authorizationError), for the same log line.
const char* verifyCodeName(long code) {
  switch (code) {
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT: return "UNABLE_TO_GET_ISSUER_CERT";
    case X509_V_ERR_UNABLE_TO_GET_CRL: return "UNABLE_TO_GET_CRL";
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE: return "UNABLE_TO_DECRYPT_CERT_SIGNATURE";
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return "UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY";
    case X509_V_ERR_CERT_SIGNATURE_FAILURE: return "CERT_SIGNATURE_FAILURE";
    case X509_V_ERR_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case X509_V_ERR_CERT_HAS_EXPIRED: return "CERT_HAS_EXPIRED";
    case X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD: return "ERROR_IN_CERT_NOT_BEFORE_FIELD";
    case X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD: return "ERROR_IN_CERT_NOT_AFTER_FIELD";
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT: return "DEPTH_ZERO_SELF_SIGNED_CERT";
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN: return "SELF_SIGNED_CERT_IN_CHAIN";
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY: return "UNABLE_TO_GET_ISSUER_CERT_LOCALLY";
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE: return "UNABLE_TO_VERIFY_LEAF_SIGNATURE";
    case X509_V_ERR_CERT_CHAIN_TOO_LONG: return "CERT_CHAIN_TOO_LONG";
    case X509_V_ERR_CERT_REVOKED: return "CERT_REVOKED";
    case X509_V_ERR_INVALID_CA: return "INVALID_CA";
    case X509_V_ERR_PATH_LENGTH_EXCEEDED: return "PATH_LENGTH_EXCEEDED";
    case X509_V_ERR_INVALID_PURPOSE: return "INVALID_PURPOSE";
    case X509_V_ERR_CERT_UNTRUSTED: return "CERT_UNTRUSTED";
    case X509_V_ERR_CERT_REJECTED: return "CERT_REJECTED";
    default: return "UNSPECIFIED";
  }
}

std::string timeText(const ASN1_TIME* t) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || t == nullptr || ASN1_TIME_print(bio.get(), t) != 1) {
    ERR_clear_error();
    return "?";
  }
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 && data != nullptr ? std::string(data, size_t(len)) : std::string("?");
}

// Every certificate of a PEM text, in order.
std::vector<X509Ptr> readCerts(const std::string& pem, const char* what) {
  BioPtr bio(BIO_new_mem_buf(pem.data(), pem.size() > size_t(INT_MAX) ? -1 : int(pem.size())));
  if (!bio) throw std::runtime_error(std::string(what) + ": " + opensslReason("out of memory"));
  std::vector<X509Ptr> certs;
  for (;;) {
    X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr);
    if (x == nullptr) break;
    certs.emplace_back(x);
  }
  // The end of the text is an error on the queue too (no start line): only a certificate that failed to parse is one.
  const unsigned long err = ERR_peek_last_error();
  if (err != 0 && !(ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE)) {
    throw std::runtime_error(std::string(what) + " does not parse: " + opensslReason("bad PEM"));
  }
  ERR_clear_error();
  if (certs.empty()) throw std::runtime_error(std::string(what) + " holds no PEM certificate");
  return certs;
}

SslCtxPtr makeContext(bool server, const std::vector<X509Ptr>& chain, EVP_PKEY* key, X509_STORE* store) {
  SslCtxPtr ctx(SSL_CTX_new(server ? TLS_server_method() : TLS_client_method()));
  if (!ctx) throw std::runtime_error("SSL_CTX_new: " + opensslReason("out of memory"));
  SSL_CTX* c = ctx.get();
  // Sidecar to sidecar is TLS 1.3 only.
  if (SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION) != 1 || SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION) != 1) {
    throw std::runtime_error("TLS 1.3: " + opensslReason("not supported by this OpenSSL"));
  }
  if (SSL_CTX_use_certificate(c, chain[0].get()) != 1) throw std::runtime_error("the certificate: " + opensslReason("refused"));
  for (size_t i = 1; i < chain.size(); i++) {
    if (SSL_CTX_add1_chain_cert(c, chain[i].get()) != 1) throw std::runtime_error("the certificate chain: " + opensslReason("refused"));
  }
  if (SSL_CTX_use_PrivateKey(c, key) != 1 || SSL_CTX_check_private_key(c) != 1) {
    throw std::runtime_error("the key does not match the certificate: " + opensslReason("mismatch"));
  }
  SSL_CTX_set1_cert_store(c, store);
  // A server asks for the caller's certificate; either side judges the peer's after the handshake (verifyPeer).
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, completeHandshake);
  // No session tickets or cache: connections are pooled and long-lived, and every new one verifies afresh (a
  // rotated trust bundle or policy applies to it). A peer that ends without close_notify ends the stream.
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  return ctx;
}

}  // namespace

std::string opensslMismatch() {
  const unsigned long running = OpenSSL_version_num();
  // 0xMNN00PPSL: major and minor are the top 12 bits.
  if ((running >> 20) == (static_cast<unsigned long>(OPENSSL_VERSION_NUMBER) >> 20)) return "";
  return std::string("the native engine was built against ") + OPENSSL_VERSION_TEXT + " but this node runs " +
         OpenSSL_version(OPENSSL_VERSION) + " (another major.minor): rebuild it (scripts/bootstrap.sh)";
}

bool spiffeIdentity(X509* cert, std::string& out) {
  if (cert == nullptr) return false;
  struct NamesFree {
    void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
  };
  std::unique_ptr<GENERAL_NAMES, NamesFree> names(
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr)));
  if (!names) return false;
  const int count = sk_GENERAL_NAME_num(names.get());
  for (int i = 0; i < count; i++) {
    const GENERAL_NAME* name = sk_GENERAL_NAME_value(names.get(), i);
    if (name == nullptr || name->type != GEN_URI || name->d.uniformResourceIdentifier == nullptr) continue;
    const int len = ASN1_STRING_length(name->d.uniformResourceIdentifier);
    const unsigned char* data = ASN1_STRING_get0_data(name->d.uniformResourceIdentifier);
    if (len <= 0 || data == nullptr) continue;
    const std::string_view uri(reinterpret_cast<const char*>(data), size_t(len));
    // The first URI that is a spiffe:// one, as mtls.ts spiffeIdOf takes it; its trust domain is authorize()'s to read.
    if (uri.substr(0, 9) != "spiffe://") continue;
    out.assign(uri);
    return true;
  }
  return false;
}

std::shared_ptr<const SecuritySnapshot> buildSecurity(SecurityInput in) {
  ERR_clear_error();
  auto snap = std::make_shared<SecuritySnapshot>();
  snap->mode = in.mode;
  snap->identity = std::move(in.identity);
  snap->policy = std::move(in.policy);
  const std::vector<X509Ptr> chain = readCerts(in.certChain, "the certificate chain");
  const std::vector<X509Ptr> trusted = readCerts(in.trustBundle, "the trust bundle");
  BioPtr keyBio(BIO_new_mem_buf(in.key.data(), in.key.size() > size_t(INT_MAX) ? -1 : int(in.key.size())));
  PkeyPtr key(keyBio ? PEM_read_bio_PrivateKey(keyBio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) throw std::runtime_error("the key does not parse: " + opensslReason("no PEM private key"));
  X509StorePtr store(X509_STORE_new());
  if (!store) throw std::runtime_error("X509_STORE_new: " + opensslReason("out of memory"));
  for (const X509Ptr& ca : trusted) {
    if (X509_STORE_add_cert(store.get(), ca.get()) != 1) {
      const unsigned long err = ERR_peek_last_error();
      // The same CA twice in a bundle is harmless.
      if (ERR_GET_REASON(err) != X509_R_CERT_ALREADY_IN_HASH_TABLE) throw std::runtime_error("the trust bundle: " + opensslReason("refused"));
      ERR_clear_error();
    }
  }
  snap->server = makeContext(true, chain, key.get(), store.get());
  snap->client = makeContext(false, chain, key.get(), store.get());
  return snap;
}

TlsConn::TlsConn(SSL_CTX* ctx, bool server, std::string expect) : expect_(std::move(expect)), server_(server) {
  BIO_METHOD* method = queueMethod();
  if (ctx == nullptr || method == nullptr) return;
  SslPtr ssl(SSL_new(ctx));
  if (!ssl) {
    ERR_clear_error();
    return;
  }
  BIO* bio = BIO_new(method);
  if (bio == nullptr) {
    ERR_clear_error();
    return;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl.get(), bio, bio);  // one BIO both ways: one reference, owned by the SSL
  SSL_set_app_data(ssl.get(), this);
  if (server) SSL_set_accept_state(ssl.get());
  else SSL_set_connect_state(ssl.get());
  ssl_ = std::move(ssl);
}

void TlsConn::noteFailure(HandshakeFailure f, std::string text) {
  if (noted_) return;  // the first reason is the one
  noted_ = true;
  failure_ = f;
  failureText_ = std::move(text);
}

TlsConn::Step TlsConn::handshake() {
  if (open_) return Step::Done;
  if (!ssl_) {
    noteFailure(HandshakeFailure::Protocol, "no TLS context");
    return Step::Failed;
  }
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_.get());
  if (r == 1) {
    if (!verifyPeer()) return Step::Failed;
    open_ = true;
    return Step::Done;
  }
  const int e = SSL_get_error(ssl_.get(), r);
  if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
    if (!eof || e == SSL_ERROR_WANT_WRITE) return Step::Again;
    noteFailure(HandshakeFailure::Protocol, "the peer closed the connection during the handshake");
    return Step::Failed;
  }
  // Refused before it completed (a version, a cipher, a malformed record, the peer's alert): as the TypeScript
  // engine counts whatever its TLS layer raises.
  if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
    noteFailure(HandshakeFailure::Protocol, "the TLS handshake failed: the peer closed the connection");
  } else {
    noteFailure(HandshakeFailure::Protocol, "the TLS handshake failed: " + opensslReason("unknown error"));
  }
  ERR_clear_error();
  return Step::Failed;
}

bool TlsConn::verifyPeer() {
  const std::string who = server_ ? "the caller" : "the provider";
  X509* cert = SSL_get0_peer_certificate(ssl_.get());
  if (cert == nullptr) {
    noteFailure(HandshakeFailure::NoClientCert, who + " presented no certificate");
    return false;
  }
  const long verdict = SSL_get_verify_result(ssl_.get());
  if (verdict != X509_V_OK) {
    const std::string code = verifyCodeName(verdict);
    if (verdict == X509_V_ERR_CERT_HAS_EXPIRED || verdict == X509_V_ERR_CERT_NOT_YET_VALID) {
      noteFailure(HandshakeFailure::Expired, who + "'s certificate is outside its validity period (" + timeText(X509_get0_notBefore(cert)) +
                                                 " to " + timeText(X509_get0_notAfter(cert)) + "): " + code);
    } else {
      noteFailure(HandshakeFailure::Untrusted, who + "'s certificate does not verify against the trust bundle: " + code);
    }
    return false;
  }
  std::string id;
  if (!spiffeIdentity(cert, id)) {
    noteFailure(HandshakeFailure::NoIdentity, who + "'s certificate carries no spiffe:// URI in its SAN");
    return false;
  }
  if (!expect_.empty() && id != expect_) {
    noteFailure(HandshakeFailure::WrongIdentity, "the provider's certificate is " + id + "; the registry says that endpoint is " + expect_);
    return false;
  }
  peer_ = std::move(id);
  return true;
}

int TlsConn::read(uint8_t* buf, size_t cap) {
  if (!ssl_ || !open_) return -2;
  ERR_clear_error();
  const int n = SSL_read(ssl_.get(), buf, cap > size_t(INT_MAX) ? INT_MAX : int(cap));
  if (n > 0) return n;
  const int e = SSL_get_error(ssl_.get(), n);
  if (e == SSL_ERROR_WANT_READ) {
    if (!eof) return 0;
    failureText_ = "closed";
    return -1;
  }
  if (e == SSL_ERROR_ZERO_RETURN) {
    failureText_ = "closed";
    return -1;
  }
  failureText_ = opensslReason("TLS read failed");
  return -2;
}

int TlsConn::write(const uint8_t* p, size_t len) {
  if (!ssl_ || !open_) return -1;
  if (len == 0) return 0;
  ERR_clear_error();
  const int n = SSL_write(ssl_.get(), p, len > size_t(INT_MAX) ? INT_MAX : int(len));
  if (n > 0) return n;
  failureText_ = opensslReason("TLS write failed");
  return -1;
}

void TlsConn::close() {
  if (!ssl_ || !open_ || closeSent_) return;
  closeSent_ = true;
  ERR_clear_error();
  SSL_shutdown(ssl_.get());
  ERR_clear_error();
}

}  // namespace meshport
