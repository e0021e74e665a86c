// Owned file descriptors and byte queues: the two resources every connection of the engine holds.
#pragma once

#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

namespace meshport {

// A file descriptor closed exactly once, when its owner goes.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) reset(o.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// Bytes read and not yet consumed, or written and not yet sent. Grows with what arrives (never with what a header
// claims), compacts instead of growing when the front has been consumed, and gives its memory back when it empties
// after a burst, so an idle connection holds no large buffer.
class ByteQueue {
 public:
  static constexpr size_t kKeepWhenIdle = 16 * 1024;

  uint8_t* data() { return buf_.data() + head_; }
  const uint8_t* data() const { return buf_.data() + head_; }
  size_t size() const { return tail_ - head_; }
  bool empty() const { return tail_ == head_; }

  // Room for at least `n` more bytes at the end; commit() what was written there.
  uint8_t* reserve(size_t n) {
    if (buf_.size() - tail_ < n) {
      if (head_ > 0) {
        std::memmove(buf_.data(), buf_.data() + head_, tail_ - head_);
        tail_ -= head_;
        head_ = 0;
      }
      if (buf_.size() - tail_ < n) {
        size_t want = buf_.size() * 2;
        if (want < tail_ + n) want = tail_ + n;
        if (want < 4096) want = 4096;
        buf_.resize(want);
      }
    }
    return buf_.data() + tail_;
  }
  size_t room() const { return buf_.size() - tail_; }
  void commit(size_t n) { tail_ += n; }

  void append(const void* p, size_t n) {
    if (n == 0) return;  // an empty queue has no buffer: memcpy to null is undefined even for 0 bytes
    std::memcpy(reserve(n), p, n);
    commit(n);
  }

  void consume(size_t n) {
    head_ += n;
    if (head_ >= tail_) {
      head_ = tail_ = 0;
      if (buf_.size() > kKeepWhenIdle) std::vector<uint8_t>().swap(buf_);
    }
  }

  void clear() {
    head_ = tail_ = 0;
    std::vector<uint8_t>().swap(buf_);
  }

  size_t capacity() const { return buf_.size(); }

 private:
  std::vector<uint8_t> buf_;
  size_t head_ = 0;
  size_t tail_ = 0;
};

}  // namespace meshport
