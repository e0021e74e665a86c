// libFuzzer target: reading a peer's identity from its certificate (spiffeIdentity, native/tls.cc) and everything
// the engine frees around it, on certificates OpenSSL parses from the input. Half the inputs are a whole DER
// certificate; the other half a DER GeneralNames that becomes the SAN extension of an empty certificate, so the
// fuzzer reaches the SAN walk without having to build a valid certificate first. ASan/LSan see what the RAII
// wrappers free (or not); the checks abort on an identity that is not what the SAN holds.
//
// Built against Debian's libssl-dev (this target runs outside node), the same OpenSSL 3.0 as node's.

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "tls.h"

using namespace meshport;

namespace {

[[noreturn]] void broken(const char* what) {
  std::fprintf(stderr, "san invariant broken: %s\n", what);
  std::abort();
}
#define CHECK(cond) \
  do {              \
    if (!(cond)) broken(#cond); \
  } while (0)

struct NamesFree {
  void operator()(GENERAL_NAMES* p) const { GENERAL_NAMES_free(p); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1 || size > (1 << 20)) return 0;
  const bool whole = (data[0] & 1) != 0;
  const unsigned char* p = data + 1;
  const long len = long(size - 1);
  X509Ptr cert;
  if (whole) {
    cert.reset(d2i_X509(nullptr, &p, len));
  } else {
    std::unique_ptr<GENERAL_NAMES, NamesFree> names(d2i_GENERAL_NAMES(nullptr, &p, len));
    if (names) {
      cert.reset(X509_new());
      if (cert && X509_add1_ext_i2d(cert.get(), NID_subject_alt_name, names.get(), 0, 0) != 1) cert.reset();
    }
  }
  if (cert) {
    std::string id;
    if (spiffeIdentity(cert.get(), id)) {
      CHECK(id.compare(0, 9, "spiffe://") == 0);
      CHECK(id.size() < size);
      // The same certificate gives the same identity.
      std::string again;
      CHECK(spiffeIdentity(cert.get(), again) && again == id);
    }
  }
  std::string none;
  CHECK(!spiffeIdentity(nullptr, none) && none.empty());
  ERR_clear_error();
  return 0;
}
