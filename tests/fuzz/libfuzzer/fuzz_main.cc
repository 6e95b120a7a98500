// The entry point of one request fuzzer; KVTIER_FUZZ_FN names its target (request_targets.cc).
#include <cstddef>
#include <cstdint>

#include "spdlog/spdlog.h"
#include "tests/fuzz/libfuzzer/service_harness.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::critical);  // the service's warnings on bad input are expected
  kvtier::fuzz::Harness::Get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return kvtier::fuzz::KVTIER_FUZZ_FN(data, size);
}
