// bench/build_info.cpp — see build_info.hpp.
#include "build_info.hpp"

#include <Poco/Version.h>
#include <apr_version.h>
#include <apu_version.h>
#include <benchmark/benchmark.h>
#include <sys/utsname.h>

#include <fstream>
#include <string>

#include <oneapi/tbb/version.h>

namespace bench {
namespace {

std::string compiler() {
#if defined(__clang__)
  return std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("g++ ") + __VERSION__;
#else
  return "unknown";
#endif
}

// POCO_VERSION is 0xAABBCCDD: major AA, minor BB, patch CC (hex digits per field).
std::string poco_version() {
  constexpr unsigned long v = POCO_VERSION;
  return std::to_string((v >> 24) & 0xff) + "." + std::to_string((v >> 16) & 0xff) + "." +
         std::to_string((v >> 8) & 0xff);
}

std::string cpu_model() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);) {
    if (line.rfind("model name", 0) == 0) {
      // "model name\t: AMD EPYC": the text after the colon and its spaces (none: an empty name).
      const auto colon = line.find(':');
      if (colon == std::string::npos) continue;
      const auto start = line.find_first_not_of(' ', colon + 1);
      return start == std::string::npos ? std::string() : line.substr(start);
    }
  }
  return "unknown";
}

std::string kernel() {
  utsname name{};
  if (uname(&name) != 0) return "unknown";
  return std::string(name.sysname) + " " + name.release;
}

}  // namespace

void record_build_info() {
  benchmark::AddCustomContext("netpool_bench.compiler", compiler());
  benchmark::AddCustomContext("netpool_bench.cpu_model", cpu_model());
  benchmark::AddCustomContext("netpool_bench.kernel", kernel());
  benchmark::AddCustomContext("netpool_bench.poco_version", poco_version());
  benchmark::AddCustomContext("netpool_bench.apr_version", APR_VERSION_STRING);
  benchmark::AddCustomContext("netpool_bench.apr_util_version", APU_VERSION_STRING);
  benchmark::AddCustomContext("netpool_bench.tbb_version", TBB_VERSION_STRING);
}

}  // namespace bench
