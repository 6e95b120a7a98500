"""kvtier: the Python client of the kvtier KV-cache daemon (kvtierd).

    import kvtier, numpy as np
    client = kvtier.Client()                 # $KVTIER_SOCKET, else ./var/kvtier.sock
    ns = client.register_namespace(model="m", num_layers=4, kv_heads=2, head_size=64,
                                   dtype="fp16", tokens_per_block=16)
    keys = kvtier.PrefixHasher(ns).hash(token_ids)
    client.save(ns, keys, [np.zeros(ns.block_bytes, np.uint8) for _ in keys])
    n = client.lookup(ns, keys)

Calls release the GIL while they wait on the daemon or copy bytes; failures raise kvtier.Error
(subclasses by status code) with the daemon's message. Engine adapters: kvtier.vllm_connector
(vLLM KVConnectorBase_V1) and kvtier.sglang_backend (SGLang HiCacheStorage); neither imports
its engine unless it is installed.
"""

from ._errors import (
    DeadlineExceededError,
    Error,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    UnavailableError,
)
from ._native import (
    Client,
    GpuKv,
    KvTransfer,
    Namespace,
    PagedKV,
    PrefixHasher,
    resolve_socket_path,
)

KEY_BYTES = 16

__all__ = [
    "Client",
    "DeadlineExceededError",
    "Error",
    "GpuKv",
    "InvalidArgumentError",
    "KEY_BYTES",
    "KvTransfer",
    "Namespace",
    "NotFoundError",
    "PagedKV",
    "PrefixHasher",
    "ResourceExhaustedError",
    "UnavailableError",
    "resolve_socket_path",
]
