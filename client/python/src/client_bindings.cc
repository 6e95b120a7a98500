// kvtier.Client, kvtier.Namespace and kvtier.PrefixHasher over the C++ client. Every call that
// talks to the daemon or copies block bytes releases the GIL.
#include <pybind11/stl.h>

#include <optional>

#include "client/python/src/py_util.h"

namespace kvtier::python {
namespace {

std::unique_ptr<Client> Connect(const std::optional<std::string>& socket, int timeout_ms,
                                uint32_t lease_ms, bool map_arena, bool prefault) {
  ClientOptions options;
  options.socket_path = socket.value_or("");
  options.timeout_ms = timeout_ms;
  options.lease_ms = lease_ms;
  options.map_arena = map_arena;
  options.prefault = prefault;
  std::unique_ptr<Client> client;
  Status s;
  {
    py::gil_scoped_release release;
    s = Client::Connect(options, &client);
  }
  ThrowIfError(s);
  return client;
}

BlockKey ParentFromPy(const py::object& parent) {
  return parent.is_none() ? BlockKey{} : KeyFromPy(parent);
}

py::dict TierToDict(const TierStats& t) {
  py::dict d;
  d["name"] = t.name;
  d["capacity_bytes"] = t.capacity_bytes;
  d["used_bytes"] = t.used_bytes;
  d["blocks"] = t.blocks;
  d["hits"] = t.hits;
  d["misses"] = t.misses;
  d["evictions"] = t.evictions;
  d["bytes_in"] = t.bytes_in;
  d["bytes_out"] = t.bytes_out;
  d["status"] = t.status;
  d["read_bytes_per_s"] = t.read_bytes_per_s;
  d["write_bytes_per_s"] = t.write_bytes_per_s;
  return d;
}

py::dict StatsToDict(const DaemonStats& s) {
  py::dict d;
  d["node_id"] = s.node_id;
  d["version"] = s.version;
  d["uptime_ms"] = s.uptime_ms;
  py::list tiers;
  for (const TierStats& t : s.tiers) tiers.append(TierToDict(t));
  d["tiers"] = tiers;
  d["namespaces"] = s.namespaces;
  d["leases"] = s.leases;
  d["lookups"] = s.lookups;
  d["lookup_keys"] = s.lookup_keys;
  d["lookup_hit_keys"] = s.lookup_hit_keys;
  d["rejected_writes"] = s.rejected_writes;
  d["remote_hit_keys"] = s.remote_hit_keys;
  d["remote_pulls"] = s.remote_pulls;
  d["remote_pull_bytes"] = s.remote_pull_bytes;
  d["remote_pull_failures"] = s.remote_pull_failures;
  return d;
}

py::dict ClusterToDict(const ClusterInfo& c) {
  py::dict d;
  d["enabled"] = c.enabled;
  d["self_id"] = c.self_id;
  d["membership"] = c.membership;
  d["membership_status"] = c.membership_status;
  d["roster_version"] = c.roster_version;
  d["transport"] = c.transport;
  d["directory_entries"] = c.directory_entries;
  d["stale_roster_rejects"] = c.stale_roster_rejects;
  py::list members;
  for (const ClusterMemberInfo& m : c.members) {
    py::dict md;
    md["id"] = m.id;
    md["address"] = m.address;
    md["slot"] = m.slot;
    md["state"] = m.state;
    md["bytes_in"] = m.bytes_in;
    md["pulls"] = m.pulls;
    md["calls"] = m.calls;
    md["errors"] = m.errors;
    md["latency_ms_p50"] = m.latency_ms_p50;
    md["latency_ms_p99"] = m.latency_ms_p99;
    md["last_error"] = m.last_error;
    members.append(md);
  }
  d["members"] = members;
  return d;
}

py::dict DropToDict(const DropResult& r) {
  py::dict d;
  d["dropped"] = r.dropped;
  d["busy"] = r.busy;
  d["missing"] = r.missing;
  return d;
}

// Lookup, Prefetch and Drop take a namespace id; accept a Namespace or an int.
uint64_t NamespaceId(py::handle ns) {
  if (py::isinstance<PyNamespace>(ns)) return ns.cast<const PyNamespace&>().id;
  return ns.cast<uint64_t>();
}

size_t Save(Client& client, const PyNamespace& ns, const std::vector<BlockKey>& keys,
            const std::vector<void*>& blocks, const BlockKey& parent) {
  std::vector<const void*> src(blocks.begin(), blocks.end());
  size_t saved = 0;
  Status s;
  {
    py::gil_scoped_release release;
    s = client.Save(ns.ToNative(), keys, src, &saved, parent);
  }
  ThrowIfError(s);
  return saved;
}

size_t Load(Client& client, const PyNamespace& ns, const std::vector<BlockKey>& keys,
            const std::vector<void*>& blocks) {
  size_t loaded = 0;
  Status s;
  {
    py::gil_scoped_release release;
    s = client.Load(ns.ToNative(), keys, blocks, &loaded);
  }
  ThrowIfError(s);
  return loaded;
}

std::vector<int32_t> TokensFromPy(py::handle tokens) {
  // Fast path: an int32 buffer (numpy.int32 array, array('i')).
  if (PyObject_CheckBuffer(tokens.ptr())) {
    py::buffer_info info = py::reinterpret_borrow<py::buffer>(tokens).request();
    if (info.ndim == 1 && info.itemsize == 4 && (info.format == "i" || info.format == "l") &&
        info.strides[0] == 4) {
      const int32_t* data = static_cast<const int32_t*>(info.ptr);
      return std::vector<int32_t>(data, data + info.shape[0]);
    }
  }
  std::vector<int32_t> out;
  for (py::handle t : py::iter(tokens)) {
    const int64_t v = t.cast<int64_t>();
    if (v < INT32_MIN || v > INT32_MAX) throw py::value_error("token_ids: a token is out of int32");
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

}  // namespace

void RegisterClient(py::module_& m) {
  py::class_<PyNamespace>(m, "Namespace")
      .def(py::init([](uint64_t id, uint64_t block_bytes, uint32_t tokens_per_block) {
             return PyNamespace{id, block_bytes, tokens_per_block};
           }),
           py::arg("id"), py::arg("block_bytes"), py::arg("tokens_per_block") = 0)
      .def_readonly("id", &PyNamespace::id)
      .def_readonly("block_bytes", &PyNamespace::block_bytes)
      .def_readonly("tokens_per_block", &PyNamespace::tokens_per_block)
      .def(
          "__eq__",
          [](const PyNamespace& a, const PyNamespace& b) {
            return a.id == b.id && a.block_bytes == b.block_bytes;
          },
          py::is_operator())
      .def("__hash__", [](const PyNamespace& a) { return py::hash(py::int_(a.id)); })
      .def("__repr__", [](const PyNamespace& ns) {
        char buf[128];
        std::snprintf(buf, sizeof(buf), "Namespace(id=0x%016llx, block_bytes=%llu)",
                      static_cast<unsigned long long>(ns.id),
                      static_cast<unsigned long long>(ns.block_bytes));
        return std::string(buf);
      });

  py::class_<PrefixHasher>(m, "PrefixHasher")
      .def(py::init([](const PyNamespace& ns, std::optional<uint32_t> tokens_per_block) {
             const uint32_t tpb = tokens_per_block.value_or(ns.tokens_per_block);
             if (tpb == 0) {
               throw py::value_error(
                   "PrefixHasher: the namespace has no tokens_per_block; pass tokens_per_block=");
             }
             return PrefixHasher(ns.id, tpb);
           }),
           py::arg("ns"), py::arg("tokens_per_block") = py::none())
      .def(
          "hash",
          [](const PrefixHasher& h, py::handle tokens, const py::object& parent,
             const py::bytes& extra) {
            const std::vector<int32_t> ids = TokensFromPy(tokens);
            const BlockKey parent_key = ParentFromPy(parent);
            const std::string extra_bytes = extra;
            std::vector<BlockKey> keys;
            {
              py::gil_scoped_release release;
              keys = h.HashTokens(ids, parent_key, extra_bytes);
            }
            return KeysToPy(keys);
          },
          py::arg("token_ids"), py::arg("parent") = py::none(), py::arg("extra") = py::bytes())
      .def(
          "from_engine_hash",
          [](const PrefixHasher& h, const py::bytes& engine_hash) {
            return KeyToPy(h.FromEngineHash(std::string_view(engine_hash)));
          },
          py::arg("engine_hash"))
      .def(
          "from_engine_hashes",
          [](const PrefixHasher& h, const py::iterable& hashes) {
            py::list out;
            for (py::handle item : hashes) {
              out.append(KeyToPy(h.FromEngineHash(std::string_view(item.cast<py::bytes>()))));
            }
            return out;
          },
          py::arg("engine_hashes"));

  py::class_<Client>(m, "Client")
      .def(py::init(&Connect), py::arg("socket") = py::none(), py::arg("timeout_ms") = 5000,
           py::arg("lease_ms") = 0, py::arg("map_arena") = true, py::arg("prefault") = true)
      .def_property_readonly("socket_path", &Client::socket_path)
      .def(
          "register_namespace",
          [](Client& c, const std::string& model, uint32_t num_layers, uint32_t kv_heads,
             uint32_t head_size, const std::string& dtype, uint32_t tokens_per_block,
             uint32_t tp_rank, uint32_t tp_size, uint32_t pp_rank, uint32_t pp_size,
             const std::string& layout, uint64_t block_bytes, const std::string& revision) {
            NamespaceLayout l;
            l.model_id = model;
            l.model_revision = revision;
            l.num_layers = num_layers;
            l.kv_heads = kv_heads;
            l.head_size = head_size;
            l.dtype = dtype;
            l.tokens_per_block = tokens_per_block;
            l.tp_rank = tp_rank;
            l.tp_size = tp_size;
            l.pp_rank = pp_rank;
            l.pp_size = pp_size;
            l.layout_tag = layout;
            l.block_bytes = block_bytes;
            Namespace ns;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.RegisterNamespace(l, &ns);
            }
            ThrowIfError(s);
            return PyNamespace{ns.id, ns.block_bytes, tokens_per_block};
          },
          py::kw_only(), py::arg("model"), py::arg("num_layers") = 0, py::arg("kv_heads") = 0,
          py::arg("head_size") = 0, py::arg("dtype") = "", py::arg("tokens_per_block") = 0,
          py::arg("tp_rank") = 0, py::arg("tp_size") = 1, py::arg("pp_rank") = 0,
          py::arg("pp_size") = 1, py::arg("layout") = "", py::arg("block_bytes") = 0,
          py::arg("revision") = "")
      .def(
          "lookup",
          [](Client& c, py::handle ns, py::handle keys) {
            const uint64_t id = NamespaceId(ns);
            const std::vector<BlockKey> k = KeysFromPy(keys);
            LookupResult r;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Lookup(id, k, &r);
            }
            ThrowIfError(s);
            return r.prefix_blocks;
          },
          py::arg("ns"), py::arg("keys"))
      .def(
          "lookup_tiers",
          [](Client& c, py::handle ns, py::handle keys) {
            const uint64_t id = NamespaceId(ns);
            const std::vector<BlockKey> k = KeysFromPy(keys);
            LookupResult r;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Lookup(id, k, &r);
            }
            ThrowIfError(s);
            std::vector<std::string> tiers;
            for (Tier t : r.tiers) tiers.emplace_back(TierName(t));
            return tiers;
          },
          py::arg("ns"), py::arg("keys"))
      .def(
          "prefetch",
          [](Client& c, py::handle ns, py::handle keys) {
            const uint64_t id = NamespaceId(ns);
            const std::vector<BlockKey> k = KeysFromPy(keys);
            size_t present = 0;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Prefetch(id, k, &present);
            }
            ThrowIfError(s);
            return present;
          },
          py::arg("ns"), py::arg("keys"))
      .def(
          "save",
          [](Client& c, const PyNamespace& ns, py::handle keys, py::handle buffers,
             const py::object& parent) {
            const std::vector<BlockKey> k = KeysFromPy(keys);
            BlockBuffers held(buffers, k.size(), ns.block_bytes, /*writable=*/false);
            return Save(c, ns, k, held.pointers(), ParentFromPy(parent));
          },
          py::arg("ns"), py::arg("keys"), py::arg("buffers"), py::arg("parent") = py::none())
      .def(
          "load",
          [](Client& c, const PyNamespace& ns, py::handle keys, py::handle buffers) {
            const std::vector<BlockKey> k = KeysFromPy(keys);
            BlockBuffers held(buffers, k.size(), ns.block_bytes, /*writable=*/true);
            return Load(c, ns, k, held.pointers());
          },
          py::arg("ns"), py::arg("keys"), py::arg("buffers"))
      .def(
          "save_ptrs",
          [](Client& c, const PyNamespace& ns, py::handle keys, py::handle ptrs,
             const py::object& parent) {
            const std::vector<BlockKey> k = KeysFromPy(keys);
            return Save(c, ns, k, PointersFromPy(ptrs, k.size()), ParentFromPy(parent));
          },
          py::arg("ns"), py::arg("keys"), py::arg("ptrs"), py::arg("parent") = py::none())
      .def(
          "load_ptrs",
          [](Client& c, const PyNamespace& ns, py::handle keys, py::handle ptrs) {
            const std::vector<BlockKey> k = KeysFromPy(keys);
            return Load(c, ns, k, PointersFromPy(ptrs, k.size()));
          },
          py::arg("ns"), py::arg("keys"), py::arg("ptrs"))
      .def(
          "drop",
          [](Client& c, py::handle ns, py::handle keys) {
            const uint64_t id = NamespaceId(ns);
            const std::vector<BlockKey> k = KeysFromPy(keys);
            DropResult r;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.Drop(id, k, &r);
            }
            ThrowIfError(s);
            return DropToDict(r);
          },
          py::arg("ns"), py::arg("keys"))
      .def(
          "drop_all",
          [](Client& c, py::handle ns) {
            const uint64_t id = NamespaceId(ns);
            DropResult r;
            Status s;
            {
              py::gil_scoped_release release;
              s = c.DropAll(id, &r);
            }
            ThrowIfError(s);
            return DropToDict(r);
          },
          py::arg("ns"))
      .def("stats",
           [](Client& c) {
             DaemonStats stats;
             Status s;
             {
               py::gil_scoped_release release;
               s = c.Stats(&stats);
             }
             ThrowIfError(s);
             return StatsToDict(stats);
           })
      .def("cluster", [](Client& c) {
        ClusterInfo info;
        Status s;
        {
          py::gil_scoped_release release;
          s = c.Cluster(&info);
        }
        ThrowIfError(s);
        return ClusterToDict(info);
      });
}

}  // namespace kvtier::python
