// The kvtier._native extension module; kvtier/__init__.py re-exports it.
#include "client/python/src/py_util.h"

PYBIND11_MODULE(_native, m) {
  m.doc() = "kvtier client (C++ binding); use the kvtier package";
  kvtier::python::RegisterErrors(m);
  kvtier::python::RegisterClient(m);
  kvtier::python::RegisterGpu(m);
  m.def(
      "resolve_socket_path",
      [](const std::string& path) { return kvtier::ResolveSocketPath(path); },
      pybind11::arg("path") = "");
}
