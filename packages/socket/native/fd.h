// The file-descriptor owner both parts of the addon use (socket_ops.cc, bpf_loader.cc): every early return or
// thrown JS error closes what it holds; release() hands the fd on (to Node, to a pin) when it must outlive the call.
#pragma once

#include <unistd.h>

namespace meshport {

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&other) noexcept : fd_(other.release()) {}
  Fd &operator=(Fd &&other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }

  int get() const { return fd_; }
  // The fd, no longer owned here: closing it is the caller's job from now on.
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

}  // namespace meshport
