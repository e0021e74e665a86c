// What mutual TLS on callers and upstreams shares: the security in force, handshake counters and their log lines,
// deadlines, writing ciphertext. The TLS read and write paths themselves are in callers.cc and upstreams.cc, beside
// the plaintext ones whose framing they feed, and so is the authorization of inbound calls (Loop::authorized).

#include <errno.h>
#include <unistd.h>

#include <vector>

#include "loop.h"

namespace meshport {

namespace {

// Handshake failures of one direction and reason are logged at most this often; every one is counted.
constexpr int64_t kFailureLogEveryMs = 10000;

}  // namespace

void Loop::setSecurity(std::shared_ptr<const SecuritySnapshot> security) {
  // Connections already open keep the SSL (and so the SSL_CTX) they began with; new ones take this.
  security_ = std::move(security);
}

void Loop::handshakeDone(int direction) { stats_->tlsHandshakes[direction].fetch_add(1, std::memory_order_relaxed); }

// Counted always; logged once per 10 s per direction and reason, with the same words as the TypeScript engine.
void Loop::handshakeFailed(int direction, HandshakeFailure f, const std::string& text, const std::string& remote) {
  stats_->tlsFailures[direction][size_t(f)].fetch_add(1, std::memory_order_relaxed);
  int64_t& last = failureLoggedAt_[direction][size_t(f)];
  if (last != 0 && now_ - last < kFailureLogEveryMs) return;
  last = now_ == 0 ? 1 : now_;
  const char* dir = direction == 0 ? "inbound" : "outbound";
  const char* reason = kHandshakeFailureNames[size_t(f)];
  log("warn",
      std::string("mutual TLS ") + (direction == 0 ? "from " : "to ") + remote + " refused (" + reason + "): " + text +
          "; more are counted in meshport_tls_handshake_failures_total",
      std::string("\"direction\":\"") + dir + "\",\"reason\":\"" + reason + "\",\"peer\":" + jsonString(remote));
}

bool Loop::writeCipher(int fd, TlsConn& t, int& err) {
  while (!t.out.empty()) {
    const ssize_t n = write(fd, t.out.data(), t.out.size());
    if (n > 0) {
      t.out.consume(size_t(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
    err = n < 0 ? errno : EPIPE;
    return false;
  }
  return true;
}

// TLS callers resumed with records already read: driven once per round (the socket may have nothing to wake them).
void Loop::retryTls() {
  if (tlsAgain_.empty()) return;
  std::vector<Caller*> batch;
  batch.swap(tlsAgain_);
  for (Caller* c : batch) {
    c->tlsAgain = false;
    c->refs--;
    if (!c->closed && c->tls && c->paused == 0 && !c->closing) driveCallerTls(c);
    maybeFree(c);
  }
}

// Inbound handshakes that did not finish within connectTimeoutMs (outbound ones end with the connect deadline).
void Loop::tlsTimers() {
  if (handshaking_.empty()) return;
  std::vector<Caller*> late;
  for (Caller* c : handshaking_)
    if (c->tls && now_ >= c->tls->deadline) late.push_back(c);
  for (Caller* c : late) {
    handshakeFailed(0, HandshakeFailure::Timeout,
                    "the TLS handshake did not finish in time: " + std::to_string(s_.connectTimeoutMs) + " ms", c->source);
    closeCaller(c);
  }
}

}  // namespace meshport
