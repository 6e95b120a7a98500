// Why the conversions look the way they do: keys cross as 16-byte `bytes` so Python can hash,
// compare and store them; buffers are held as Py_buffer views for the whole call so the copy can
// run with the GIL released.
#include "client/python/src/py_util.h"

#include <cstring>

namespace kvtier::python {

BlockKey KeyFromPy(py::handle obj) {
  Py_buffer view;
  if (PyObject_GetBuffer(obj.ptr(), &view, PyBUF_SIMPLE) != 0) {
    PyErr_Clear();
    throw py::type_error("key: expected 16 bytes (bytes, bytearray or memoryview), got " +
                         std::string(py::str(py::type::handle_of(obj).attr("__name__"))));
  }
  const Py_ssize_t len = view.len;
  BlockKey key;
  if (len == 16) {
    std::memcpy(&key.lo, view.buf, 8);
    std::memcpy(&key.hi, static_cast<const char*>(view.buf) + 8, 8);
  }
  PyBuffer_Release(&view);
  if (len != 16) {
    throw py::value_error("key: expected 16 bytes, got " + std::to_string(len));
  }
  return key;
}

py::bytes KeyToPy(const BlockKey& key) {
  char raw[16];
  std::memcpy(raw, &key.lo, 8);
  std::memcpy(raw + 8, &key.hi, 8);
  return py::bytes(raw, sizeof(raw));
}

std::vector<BlockKey> KeysFromPy(py::handle seq) {
  if (py::isinstance<py::bytes>(seq)) {
    throw py::type_error("keys: expected a list of 16-byte keys, got one bytes object");
  }
  std::vector<BlockKey> keys;
  for (py::handle item : py::iter(seq)) keys.push_back(KeyFromPy(item));
  return keys;
}

py::list KeysToPy(const std::vector<BlockKey>& keys) {
  py::list out(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) out[i] = KeyToPy(keys[i]);
  return out;
}

BlockBuffers::BlockBuffers(py::handle buffers, size_t count, uint64_t block_bytes, bool writable) {
  pointers_.reserve(count);
  if (PyObject_CheckBuffer(buffers.ptr())) {
    // One buffer holding every block back to back.
    Hold(buffers, 0, count * block_bytes, writable);
    char* base = static_cast<char*>(views_[0]->buf);
    pointers_.clear();
    for (size_t i = 0; i < count; ++i) pointers_.push_back(base + i * block_bytes);
    return;
  }
  if (!PySequence_Check(buffers.ptr())) {
    throw py::type_error("buffers: expected a list of buffers or one buffer");
  }
  py::sequence seq = py::reinterpret_borrow<py::sequence>(buffers);
  if (seq.size() != count) {
    throw py::value_error("buffers: " + std::to_string(seq.size()) + " buffers for " +
                          std::to_string(count) + " keys");
  }
  for (size_t i = 0; i < count; ++i) Hold(seq[i], i, block_bytes, writable);
}

void BlockBuffers::Hold(py::handle obj, size_t index, size_t expect_bytes, bool writable) {
  auto view = std::make_unique<Py_buffer>();
  const int flags = PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0);
  if (PyObject_GetBuffer(obj.ptr(), view.get(), flags) != 0) {
    PyErr_Clear();
    throw py::type_error("buffers[" + std::to_string(index) + "]: not a C-contiguous" +
                         (writable ? " writable" : "") + " buffer");
  }
  const size_t len = static_cast<size_t>(view->len);
  void* buf = view->buf;
  views_.push_back(std::move(view));  // released by the destructor from here on
  if (len != expect_bytes) {
    throw py::value_error("buffers[" + std::to_string(index) + "]: " + std::to_string(len) +
                          " bytes, expected " + std::to_string(expect_bytes));
  }
  pointers_.push_back(buf);
}

BlockBuffers::~BlockBuffers() {
  for (auto& view : views_) PyBuffer_Release(view.get());
}

std::vector<void*> PointersFromPy(py::handle seq, size_t count) {
  std::vector<void*> out;
  for (py::handle item : py::iter(seq)) {
    const uintptr_t address = item.cast<uintptr_t>();
    if (address == 0) throw py::value_error("ptrs: null pointer");
    out.push_back(reinterpret_cast<void*>(address));
  }
  if (out.size() != count) {
    throw py::value_error("ptrs: " + std::to_string(out.size()) + " pointers for " +
                          std::to_string(count) + " keys");
  }
  return out;
}

void RegisterErrors(py::module_& m) {
  // NOLINTNEXTLINE(performance-unnecessary-value-param): pybind11 takes this signature.
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      // kvtier._errors.from_status picks the subclass for the code.
      py::object err =
          py::module_::import("kvtier._errors")
              .attr("from_status")(static_cast<int>(e.status().code()), e.status().message());
      PyErr_SetObject(reinterpret_cast<PyObject*>(Py_TYPE(err.ptr())), err.ptr());
    }
  });
}

}  // namespace kvtier::python
