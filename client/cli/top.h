// `kvtier top`: a live view of the local kvtierd, refreshed like top(1): tiers with their rates,
// lookups per second and hit ratio over the last interval, the namespaces holding the most bytes,
// and the cluster's members. On a terminal it redraws in place until Ctrl-C; otherwise (or with
// --iterations) it prints that many frames one after another, the first one-shot by default.
#pragma once

#include <ostream>

#include "kvtier/client.h"

namespace kvtier::cli {

struct TopArgs {
  int interval_ms = 1000;
  int iterations = 0;     // 0: until interrupted on a terminal, 1 otherwise
  bool terminal = false;  // redraw in place (ANSI clear) between frames
};

Status RunTop(Client& client, const TopArgs& args, std::ostream& out);

}  // namespace kvtier::cli
