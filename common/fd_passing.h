// Passing a file descriptor over a unix socket (SCM_RIGHTS) with one 64-bit word beside it: how
// kvtierd hands its DRAM arena (and the arena generation) to a client.
#pragma once

#include <cstdint>

namespace kvtier {

// Sends `word` (8 bytes, little-endian) and a duplicate of `fd` on the connected socket `conn`.
// Returns false (errno set) when sendmsg fails; never raises SIGPIPE.
bool SendFdWithWord(int conn, int fd, uint64_t word);

}  // namespace kvtier
