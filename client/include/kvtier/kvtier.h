/* kvtier C API: a thin C face of the C++ client (kvtier/client.h), for engines and language
 * bindings that cannot link C++. Link libkvtier_c.
 *
 * Every call returns a status code (the numbers of gRPC status codes, KVTIER_OK = 0) and, on
 * failure, leaves a one-line message for kvtier_last_error(). Outputs are written only on success.
 * A kvtier_client may be used from many threads at once. */
#ifndef KVTIER_KVTIER_H_
#define KVTIER_KVTIER_H_

#include <stddef.h>
#include <stdint.h>

#if defined(__GNUC__)
#define KVTIER_API __attribute__((visibility("default")))
#else
#define KVTIER_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: same numbers as gRPC's. */
enum {
  KVTIER_OK = 0,
  KVTIER_CANCELLED = 1,
  KVTIER_UNKNOWN = 2,
  KVTIER_INVALID_ARGUMENT = 3,
  KVTIER_DEADLINE_EXCEEDED = 4,
  KVTIER_NOT_FOUND = 5,
  KVTIER_ALREADY_EXISTS = 6,
  KVTIER_PERMISSION_DENIED = 7,
  KVTIER_RESOURCE_EXHAUSTED = 8,
  KVTIER_FAILED_PRECONDITION = 9,
  KVTIER_ABORTED = 10,
  KVTIER_OUT_OF_RANGE = 11,
  KVTIER_UNIMPLEMENTED = 12,
  KVTIER_INTERNAL = 13,
  KVTIER_UNAVAILABLE = 14,
  KVTIER_DATA_LOSS = 15
};

/* Where a block is (kvtier_lookup's tiers). */
enum { KVTIER_TIER_NONE = 0, KVTIER_TIER_HBM = 1, KVTIER_TIER_DRAM = 2, KVTIER_TIER_NVME = 3 };

typedef struct kvtier_client kvtier_client;

/* 128-bit block key. */
typedef struct kvtier_key {
  uint64_t lo;
  uint64_t hi;
} kvtier_key;

/* Mirrors kvtier::NamespaceLayout. NULL strings are taken as "". tp_size/pp_size 0 mean 1. */
typedef struct kvtier_layout {
  const char* model_id;
  const char* model_revision;
  uint32_t num_layers;
  uint32_t kv_heads;
  uint32_t head_size;
  const char* dtype; /* "bf16" "fp16" "fp32" "fp8_e4m3" "fp8_e5m2" "int8" */
  uint32_t tokens_per_block;
  uint32_t tp_rank;
  uint32_t tp_size;
  uint32_t pp_rank;
  uint32_t pp_size;
  const char* layout_tag; /* "flash" "flashinfer" "mla" "contiguous" "opaque"; NULL/"" = default */
  uint64_t block_bytes;   /* 0 = computed from the shape; required for "opaque" */
} kvtier_layout;

typedef struct kvtier_drop_result {
  uint32_t dropped;
  uint32_t busy; /* leased or being written: not dropped */
  uint32_t missing;
} kvtier_drop_result;

/* The message of this thread's last kvtier_* call: "" when it succeeded. Valid until the next
 * call on this thread. */
KVTIER_API const char* kvtier_last_error(void);

/* Connects to the kvtierd on socket_path (NULL or "": $KVTIER_SOCKET, else ./var/kvtier.sock) and
 * maps its arena. timeout_ms (> 0; 0 = 5000) is the deadline of every call. KVTIER_UNAVAILABLE
 * when no daemon answers. */
KVTIER_API int kvtier_connect(const char* socket_path, int timeout_ms, kvtier_client** out);
/* Closes the client; NULL is ignored. */
KVTIER_API void kvtier_close(kvtier_client* client);

/* Registers (or finds) the namespace of a layout: its id and the byte size of one block. */
KVTIER_API int kvtier_register_namespace(kvtier_client* client, const kvtier_layout* layout,
                                         uint64_t* ns_id, uint64_t* block_bytes);

/* Chained keys of the full blocks of tokens[0..n) (a trailing partial block gets none), starting
 * from *parent (NULL: a new chain). *n_keys is set to the number of full blocks; when that is more
 * than max_keys nothing is written to out_keys and KVTIER_OUT_OF_RANGE is returned (so a call with
 * max_keys 0 asks for the count). Needs no client. */
KVTIER_API int kvtier_hash_tokens(uint64_t ns_id, uint32_t tokens_per_block, const int32_t* tokens,
                                  size_t n, const kvtier_key* parent, kvtier_key* out_keys,
                                  size_t max_keys, size_t* n_keys);

/* The longest present prefix of keys[0..n): *prefix_blocks, and (tiers not NULL, n entries) the
 * tier of each present block (KVTIER_TIER_*). */
KVTIER_API int kvtier_lookup(kvtier_client* client, uint64_t ns_id, const kvtier_key* keys,
                             size_t n, size_t* prefix_blocks, int* tiers);

/* Copies blocks[i] (block_bytes each) into the cache under keys[i]; keys already cached are
 * skipped. *saved (may be NULL) = blocks written. */
KVTIER_API int kvtier_save(kvtier_client* client, uint64_t ns_id, uint64_t block_bytes,
                           const kvtier_key* keys, size_t n, const void* const* blocks,
                           size_t* saved);

/* Copies the longest cached prefix of keys[0..n) into blocks[0..*loaded) (block_bytes each). */
KVTIER_API int kvtier_load(kvtier_client* client, uint64_t ns_id, uint64_t block_bytes,
                           const kvtier_key* keys, size_t n, void* const* blocks, size_t* loaded);

/* Drops keys[0..n) of a namespace (all != 0: every block of it, keys ignored). out may be NULL. */
KVTIER_API int kvtier_drop(kvtier_client* client, uint64_t ns_id, const kvtier_key* keys, size_t n,
                           int all, kvtier_drop_result* out);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KVTIER_KVTIER_H_ */
