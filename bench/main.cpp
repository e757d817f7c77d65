// bench/main.cpp — netpool_bench: the comparison suite of issue 4 (Google Benchmark).
//
//   netpool_bench                                    # everything (scripts/bench.sh runs this)
//   netpool_bench --benchmark_filter='^get_put/'     # one section; Google Benchmark's usual flags
//   netpool_bench --benchmark_format=json --benchmark_out=results.json --benchmark_repetitions=3
//   netpool_bench --bench_timeout=600                # abort if the whole run exceeds 600 s
//
// Sections (see each bench_*.cpp): get_put/, get_put_work/, handoff/, scaling/, echo/, memory/,
// get_put_burst/, get_put_walk/, and machine/ (what a cache line shared by the two CPUs costs). Every
// contender pools real TCP connections to a server this binary runs on 127.0.0.1 (loopback_server.hpp, a
// child process); nothing is pinned, nothing is tuned per contender.
#include <benchmark/benchmark.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>

#include "build_info.hpp"
#include "environment.hpp"
#include "harness.hpp"
#include "sections.hpp"

namespace {

// Bounds the whole run: a contender that deadlocks (or a machine that stalls) ends the process with
// a message instead of hanging a CI job. It sleeps on a condition variable, so it costs nothing.
class watchdog {
 public:
  explicit watchdog(std::chrono::seconds limit)
      : thread_([this, limit] {
          std::unique_lock lock(mutex_);
          if (!done_cv_.wait_for(lock, limit, [this] { return done_; })) {
            std::fprintf(stderr, "netpool_bench: still running after %lld s (--bench_timeout), aborting\n",
                         static_cast<long long>(limit.count()));
            std::fflush(stderr);
            std::_Exit(3);
          }
        }) {}
  ~watchdog() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    done_cv_.notify_one();
    thread_.join();
  }
  watchdog(const watchdog&) = delete;
  watchdog& operator=(const watchdog&) = delete;

 private:
  std::mutex mutex_;
  std::condition_variable done_cv_;
  bool done_ = false;
  std::thread thread_;
};

// Removes --bench_timeout=N from argv (Google Benchmark rejects flags it does not know).
std::chrono::seconds take_timeout(int& argc, char** argv) {
  std::chrono::seconds timeout{1800};
  constexpr const char* flag = "--bench_timeout=";
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strncmp(argv[i], flag, std::strlen(flag)) == 0) {
      timeout = std::chrono::seconds(std::strtoll(argv[i] + std::strlen(flag), nullptr, 10));
    } else {
      argv[out++] = argv[i];
    }
  }
  argc = out;
  return timeout;
}

}  // namespace

int main(int argc, char** argv) {
  const std::chrono::seconds timeout = take_timeout(argc, argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  try {
    bench::environment environment;  // forks the server: before any thread exists
    watchdog guard(timeout);

    bench::record_build_info();
    benchmark::AddCustomContext("netpool_bench.busy_work_ns_per_iteration",
                                std::to_string(bench::busy_work_ns_per_iteration()));
    benchmark::AddCustomContext("netpool_bench.work_100ns_iterations",
                                std::to_string(bench::work_iterations(std::chrono::nanoseconds(100))));
    benchmark::AddCustomContext("netpool_bench.descriptor_limit", std::to_string(bench::descriptor_limit()));
    benchmark::AddCustomContext("netpool_bench.server",
                                "127.0.0.1:" + std::to_string(bench::server().port()));

    bench::register_get_put();
    bench::register_get_put_work();
    bench::register_handoff();
    bench::register_scaling();
    bench::register_echo();
    bench::register_memory();
    bench::register_get_put_burst();
    bench::register_get_put_walk();
    bench::register_machine();

    benchmark::RunSpecifiedBenchmarks();
    bench::pool_cache::clear();  // close the last pool while the server still runs
  } catch (const std::exception& error) {
    std::fprintf(stderr, "netpool_bench: %s\n", error.what());
    return 2;
  }
  benchmark::Shutdown();
  return 0;
}
