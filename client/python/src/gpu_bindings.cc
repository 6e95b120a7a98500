// kvtier.GpuKv, kvtier.PagedKV and kvtier.KvTransfer over kvtier/gpu.h: an engine's paged KV
// cache (device pointers from torch's data_ptr(), or host pointers) moved to and from the cache
// without Python in the data path.
#include <pybind11/stl.h>

#include "client/python/src/py_util.h"
#include "kvtier/gpu.h"

namespace kvtier::python {
namespace {

KvLayout LayoutFromName(const std::string& name) {
  if (name == "flash") return KvLayout::kFlash;
  if (name == "flashinfer") return KvLayout::kFlashInfer;
  if (name == "mla") return KvLayout::kMla;
  if (name == "contiguous") return KvLayout::kContiguous;
  throw py::value_error("layout: '" + name + "' is not one of flash, flashinfer, mla, contiguous");
}

const char* LayoutName(KvLayout layout) {
  switch (layout) {
    case KvLayout::kFlash:
      return "flash";
    case KvLayout::kFlashInfer:
      return "flashinfer";
    case KvLayout::kMla:
      return "mla";
    case KvLayout::kContiguous:
      return "contiguous";
  }
  return "unknown";
}

const char* ResultName(BlockResult r) {
  switch (r) {
    case BlockResult::kPending:
      return "pending";
    case BlockResult::kDone:
      return "done";
    case BlockResult::kSkipped:
      return "skipped";
    case BlockResult::kFailed:
      return "failed";
  }
  return "unknown";
}

GpuBackend BackendFromName(const std::string& name) {
  if (name == "auto") return GpuBackend::kAuto;
  if (name == "cpu") return GpuBackend::kCpu;
  if (name == "cuda") return GpuBackend::kCuda;
  throw py::value_error("backend: '" + name + "' is not one of auto, cpu, cuda");
}

// Wraps a transfer so Python's reference keeps the PagedKV's block ids alive with it.
struct PyTransfer {
  std::unique_ptr<KvTransfer> transfer;
};

std::unique_ptr<GpuKv> CreateGpuKv(Client* client, const std::string& backend) {
  std::unique_ptr<GpuKv> out;
  ThrowIfError(GpuKv::Create(client, BackendFromName(backend), &out));
  return out;
}

PyTransfer Start(GpuKv& kv, const PyNamespace& ns, py::handle keys, const PagedKV& paged,
                 uintptr_t stream, const py::object& parent, bool save) {
  const std::vector<BlockKey> k = KeysFromPy(keys);
  const BlockKey parent_key = parent.is_none() ? BlockKey{} : KeyFromPy(parent);
  PyTransfer out;
  Status s;
  {
    py::gil_scoped_release release;
    void* stream_ptr = reinterpret_cast<void*>(stream);
    s = save ? kv.SaveKv(ns.ToNative(), k, paged, stream_ptr, &out.transfer, parent_key)
             : kv.LoadKv(ns.ToNative(), k, paged, stream_ptr, &out.transfer);
  }
  ThrowIfError(s);
  return out;
}

}  // namespace

void RegisterGpu(py::module_& m) {
  py::class_<PagedKV>(m, "PagedKV")
      .def(py::init<>())
      .def_property(
          "layout", [](const PagedKV& p) { return std::string(LayoutName(p.layout)); },
          [](PagedKV& p, const std::string& name) { p.layout = LayoutFromName(name); })
      .def_property(
          "layer_bases",
          [](const PagedKV& p) {
            std::vector<uintptr_t> out;
            for (void* b : p.layer_bases) out.push_back(reinterpret_cast<uintptr_t>(b));
            return out;
          },
          [](PagedKV& p, const std::vector<uintptr_t>& bases) {
            p.layer_bases.clear();
            for (uintptr_t b : bases) p.layer_bases.push_back(reinterpret_cast<void*>(b));
          })
      .def_readwrite("num_layers", &PagedKV::num_layers)
      .def_readwrite("num_blocks", &PagedKV::num_blocks)
      .def_readwrite("block_size", &PagedKV::block_size)
      .def_readwrite("kv_heads", &PagedKV::kv_heads)
      .def_readwrite("head_size", &PagedKV::head_size)
      .def_readwrite("element_bytes", &PagedKV::element_bytes)
      .def_readwrite("block_stride_bytes", &PagedKV::block_stride_bytes)
      .def_readwrite("kv_stride_bytes", &PagedKV::kv_stride_bytes)
      .def_readwrite("layer_stride_bytes", &PagedKV::layer_stride_bytes)
      .def_readwrite("block_ids", &PagedKV::block_ids)
      .def("staging_block_bytes", &PagedKV::StagingBlockBytes)
      .def("fill_compact_strides", &PagedKV::FillCompactStrides);

  py::class_<PyTransfer>(m, "KvTransfer")
      .def_property_readonly("num_layers",
                             [](const PyTransfer& t) { return t.transfer->num_layers(); })
      .def(
          "wait_layer",
          [](PyTransfer& t, size_t layer) {
            Status s;
            {
              py::gil_scoped_release release;
              s = t.transfer->WaitLayer(layer);
            }
            ThrowIfError(s);
          },
          py::arg("layer"))
      .def("wait",
           [](PyTransfer& t) {
             Status s;
             {
               py::gil_scoped_release release;
               s = t.transfer->Wait();
             }
             ThrowIfError(s);
           })
      .def("results", [](const PyTransfer& t) {
        std::vector<std::string> out;
        for (BlockResult r : t.transfer->results()) out.emplace_back(ResultName(r));
        return out;
      });

  py::class_<GpuKv>(m, "GpuKv")
      .def(py::init(&CreateGpuKv), py::arg("client"), py::arg("backend") = "auto",
           py::keep_alive<1, 2>())
      .def_property_readonly("backend", [](const GpuKv& kv) { return std::string(kv.backend()); })
      .def(
          "save_kv",
          [](GpuKv& kv, const PyNamespace& ns, py::handle keys, const PagedKV& paged,
             uintptr_t stream, const py::object& parent) {
            return Start(kv, ns, keys, paged, stream, parent, /*save=*/true);
          },
          py::arg("ns"), py::arg("keys"), py::arg("kv"), py::arg("stream") = 0,
          py::arg("parent") = py::none(), py::keep_alive<0, 1>(), py::keep_alive<0, 4>())
      .def(
          "load_kv",
          [](GpuKv& kv, const PyNamespace& ns, py::handle keys, const PagedKV& paged,
             uintptr_t stream) {
            return Start(kv, ns, keys, paged, stream, py::none(), /*save=*/false);
          },
          py::arg("ns"), py::arg("keys"), py::arg("kv"), py::arg("stream") = 0,
          py::keep_alive<0, 1>(), py::keep_alive<0, 4>());
}

}  // namespace kvtier::python
