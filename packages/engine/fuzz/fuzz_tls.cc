// libFuzzer target: a TLS connection of the engine (TlsConn, native/tls.cc) fed the input as the peer's bytes, in
// chunks the input chooses: the server side taking a ClientHello and what follows, or the client side after its own
// ClientHello. What it exercises is ours: the BIO over the byte queues (short reads, retries, the end of the stream
// in the middle of a record), the handshake steps and their failure reasons, reading and writing around them.
// OpenSSL's own parsers are fuzzed upstream; this keeps our glue under ASan/UBSan/LSan.
//
// The credentials are made once, in memory (an EC P-256 key and a self-signed certificate with a spiffe:// URI SAN,
// trusting itself), and go through buildSecurity as the engine's own do. Built against Debian's libssl-dev.

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tls.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "tls invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

std::string pem(BIO* bio) {
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio, &data);
  return std::string(data, size_t(len));
}

const SecuritySnapshot& credentials() {
  static std::shared_ptr<const SecuritySnapshot> snap = [] {
    PkeyPtr key(EVP_EC_gen("P-256"));
    X509Ptr cert(X509_new());
    CHECK(key && cert);
    X509_set_version(cert.get(), 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert.get()), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert.get()), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert.get()), 86400);
    X509_set_pubkey(cert.get(), key.get());
    X509_NAME* name = X509_get_subject_name(cert.get());
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fuzz"), -1, -1, 0);
    X509_set_issuer_name(cert.get(), name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert.get(), cert.get(), nullptr, nullptr, 0);
    for (const char* ext : {"URI:spiffe://td/ns/a/sa/fuzz"}) {
      X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, NID_subject_alt_name, ext);
      CHECK(e != nullptr);
      X509_add_ext(cert.get(), e, -1);
      X509_EXTENSION_free(e);
    }
    X509_EXTENSION* ca = X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(cert.get(), ca, -1);
    X509_EXTENSION_free(ca);
    CHECK(X509_sign(cert.get(), key.get(), EVP_sha256()) > 0);
    BioPtr certBio(BIO_new(BIO_s_mem())), keyBio(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509(certBio.get(), cert.get());
    PEM_write_bio_PrivateKey(keyBio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
    SecurityInput in;
    in.mode = TlsMode::Strict;
    in.certChain = pem(certBio.get());
    in.key = pem(keyBio.get());
    in.trustBundle = in.certChain;
    in.identity = "spiffe://td/ns/a/sa/fuzz";
    return buildSecurity(std::move(in));
  }();
  return *snap;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const SecuritySnapshot& sec = credentials();
  const bool server = (data[0] & 1) != 0;
  const bool endsEarly = (data[0] & 2) != 0;
  const size_t chunk = size_t(data[1]) * 16 + 1;  // how the peer's bytes arrive: 1 to 4081 at a time
  data += 2;
  size -= 2;
  TlsConn t(server ? sec.server.get() : sec.client.get(), server, server ? std::string() : "spiffe://td/ns/a/sa/fuzz");
  CHECK(t.valid());
  TlsConn::Step step = t.handshake();
  if (server) CHECK(step == TlsConn::Step::Again && t.out.empty());  // nothing said before the ClientHello
  else CHECK(step == TlsConn::Step::Again && !t.out.empty());        // the ClientHello
  t.out.consume(t.out.size());
  uint8_t plain[16384];
  size_t at = 0;
  while (step != TlsConn::Step::Failed) {
    const size_t n = size - at < chunk ? size - at : chunk;
    t.in.append(data + at, n);
    at += n;
    if (at == size && endsEarly) t.eof = true;
    if (step == TlsConn::Step::Again) {
      step = t.handshake();
      if (step == TlsConn::Step::Failed) {
        // A refused handshake always says why, with a reason that is one of the counted ones.
        CHECK(size_t(t.failure()) < kHandshakeFailures && !t.failureText().empty());
      }
    }
    if (step == TlsConn::Step::Done) {
      for (int i = 0; i < 64; i++) {
        const int r = t.read(plain, sizeof plain);
        CHECK(r >= -2 && r <= int(sizeof plain));
        if (r <= 0) break;
      }
      t.write(reinterpret_cast<const uint8_t*>("ping"), 4);
    }
    CHECK(t.out.size() < (1u << 20));
    t.out.consume(t.out.size());
    if (at == size) break;
  }
  ERR_clear_error();
  return 0;
}
