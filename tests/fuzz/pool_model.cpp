// pool_model.cpp — libFuzzer target: netpool's pool and lean_pool against a reference model.
//
//   cmake -S . -B build -G Ninja -DCMAKE_CXX_COMPILER=clang++ -DNETPOOL_BUILD_FUZZERS=ON
//   cmake --build build --target netpool_fuzz_pool_model
//   cd build/tests && ./netpool_fuzz_pool_model -max_total_time=300 fuzz-corpus/pool_model
//       ../../tests/fuzz/corpus/pool_model          (new inputs go to the first directory)
//   NETPOOL_FUZZ_TRACE=1 build/tests/netpool_fuzz_pool_model crash-<sha1>   # replay one input, step by step
//   build/tests/netpool_fuzz_pool_model tests/fuzz/regressions/pool_model/*   (fixed bugs' reproducers)
//
// The engine (input format, model, checks) is tests/fuzz/pool_model_driver.hpp. A crash input
// copied to tests/fuzz/regressions/pool_model/ is replayed by the unit suite in every build.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "pool_model_driver.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const netpool::fuzz::run_options options;  // reads the environment once
  const netpool::fuzz::run_result r = netpool::fuzz::run_pool_model(data, size, options);
  if (!r.ok) {
    std::fprintf(stderr, "%s\n", r.failure.c_str());
    std::abort();  // libFuzzer saves the input as crash-<sha1>
  }
  return 0;
}
