// `kvtier weights ...`: pull a model file through the weight cache into a directory, list what
// is cached, prefetch and pin files. The commands take a WeightClient, so tests can drive them.
#pragma once

#include <ostream>
#include <string>

#include "kvtier/weights.h"

namespace kvtier::cli {

struct WeightsPullArgs {
  std::string uri;
  std::string dir;
  bool json = false;
  bool progress = false;  // draw a progress bar (on a terminal)
  int streams = 8;        // reads in flight (one chunk each)
};

// Writes DIR/<basename of the URI path> (under a temporary name first, renamed when complete, so
// a failed pull never leaves a partial or corrupt file under the real name).
Status RunWeightsPull(WeightClient& client, const WeightsPullArgs& args, std::ostream& out,
                      std::ostream& progress);
Status RunWeightsList(WeightClient& client, bool json, std::ostream& out);
Status RunWeightsPrefetch(WeightClient& client, const std::string& uri, bool json,
                          std::ostream& out);
Status RunWeightsPin(WeightClient& client, const std::string& uri, bool unpin, bool json,
                     std::ostream& out);

}  // namespace kvtier::cli
