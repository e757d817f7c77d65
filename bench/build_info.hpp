// bench/build_info.hpp — what a run was built with and ran on, recorded in the results' context.
//
//   bench::record_build_info();   // in main(), before benchmark::RunSpecifiedBenchmarks()
//
// The report (scripts/bench_report.py) prints these in its Method section. Taken from the binary
// (compiler, the contenders' versions, as compiled in) and from the machine it runs on (CPU model,
// kernel), not from whatever host later regenerates the report from results.json.
#pragma once

namespace bench {

void record_build_info();

}  // namespace bench
