// Conversions shared by the binding's files: Status -> kvtier.Error, 16-byte keys <-> bytes,
// buffer-protocol views of block buffers.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <string>
#include <vector>

#include "kvtier/client.h"

namespace kvtier::python {

namespace py = pybind11;

// Thrown by the binding for a non-OK Status; translated into kvtier.Error (or the subclass for
// its code) carrying .code and the daemon's message.
class StatusError : public std::exception {
 public:
  explicit StatusError(Status status) : status_(std::move(status)), what_(status_.ToString()) {}
  const Status& status() const { return status_; }
  const char* what() const noexcept override { return what_.c_str(); }

 private:
  Status status_;
  std::string what_;
};

inline void ThrowIfError(const Status& status) {
  if (!status.ok()) throw StatusError(status);
}

// A key is 16 bytes: lo then hi, little-endian (the wire form).
BlockKey KeyFromPy(py::handle obj);
py::bytes KeyToPy(const BlockKey& key);
std::vector<BlockKey> KeysFromPy(py::handle seq);
py::list KeysToPy(const std::vector<BlockKey>& keys);

// Python's view of the namespace: the daemon's Namespace plus tokens_per_block (for PrefixHasher).
struct PyNamespace {
  uint64_t id = 0;
  uint64_t block_bytes = 0;
  uint32_t tokens_per_block = 0;
  Namespace ToNative() const { return Namespace{id, block_bytes}; }
};

// Held buffer-protocol views of the per-key block buffers of one Save or Load. `buffers` is
// either a sequence with one buffer per key (each exactly block_bytes, C-contiguous) or one
// C-contiguous buffer of count * block_bytes bytes. The views keep the objects alive and
// unresizable until destruction, so the copy may run without the GIL.
class BlockBuffers {
 public:
  BlockBuffers(py::handle buffers, size_t count, uint64_t block_bytes, bool writable);
  ~BlockBuffers();
  BlockBuffers(const BlockBuffers&) = delete;
  BlockBuffers& operator=(const BlockBuffers&) = delete;

  const std::vector<void*>& pointers() const { return pointers_; }

 private:
  void Hold(py::handle obj, size_t index, size_t expect_bytes, bool writable);
  std::vector<std::unique_ptr<Py_buffer>> views_;
  std::vector<void*> pointers_;
};

// Raw addresses (e.g. torch's tensor.data_ptr()) as pointers; the caller vouches for their size.
std::vector<void*> PointersFromPy(py::handle seq, size_t count);

void RegisterErrors(py::module_& m);
void RegisterClient(py::module_& m);
void RegisterGpu(py::module_& m);

}  // namespace kvtier::python
