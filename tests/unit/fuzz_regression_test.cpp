// fuzz_regression_test.cpp — replays the model-based fuzzer's saved inputs in every build.
//
// Each file in tests/fuzz/regressions/pool_model/ (inputs that once crashed the fuzzer) and in
// tests/fuzz/corpus/pool_model/ (the hand-made seeds) is run through the same engine as the
// libFuzzer target (tests/fuzz/pool_model_driver.hpp), so the model's checks run under g++ and
// without clang's fuzzer too. To keep a crash fixed: copy its crash-<sha1> file into regressions/.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "../fuzz/pool_model_driver.hpp"

namespace {

namespace fs = std::filesystem;

// The source tree's tests/fuzz directory. The build may define NETPOOL_FUZZ_DIR; otherwise it is
// found next to this file (CMake compiles sources by absolute path, so __FILE__ is absolute).
fs::path fuzz_dir() {
#ifdef NETPOOL_FUZZ_DIR
  return fs::path(NETPOOL_FUZZ_DIR);
#else
  return fs::path(__FILE__).parent_path().parent_path() / "fuzz";
#endif
}

std::vector<fs::path> inputs_in(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.is_regular_file() && entry.path().filename().string().front() != '.')
      files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<std::uint8_t> read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void replay_all(const fs::path& dir, const netpool::fuzz::run_options& options = {}) {
  for (const fs::path& file : inputs_in(dir)) {
    SCOPED_TRACE(file.string());
    const std::vector<std::uint8_t> bytes = read_file(file);
    const netpool::fuzz::run_result r = netpool::fuzz::run_pool_model(bytes.data(), bytes.size(), options);
    EXPECT_TRUE(r.ok) << r.failure << "\n  replay step by step: NETPOOL_FUZZ_TRACE=1";
  }
}

// The seeds and every saved crash (regressions/: reproducers of library bugs the fuzzer found, fixed since).
TEST(FuzzRegression, SavedInputsAgreeWithTheModel) {
  const fs::path seeds = fuzz_dir() / "corpus" / "pool_model";
  ASSERT_FALSE(inputs_in(seeds).empty()) << "no seed inputs in " << seeds;
  replay_all(seeds);
  replay_all(fuzz_dir() / "regressions" / "pool_model");
}

// Inputs too short for a configuration or ending inside an operation are still whole runs: both
// pools are created, compared with the model, torn down, and every connection is checked closed.
TEST(FuzzRegression, EmptyAndTruncatedInputsRunCleanly) {
  const netpool::fuzz::run_result empty = netpool::fuzz::run_pool_model(nullptr, 0);
  EXPECT_TRUE(empty.ok) << empty.failure;
  EXPECT_EQ(empty.steps, 0u);
  // A 4-byte configuration, get(r0), then put without its parameter byte (read as 0: pool.put(r0)).
  const std::uint8_t odd[] = {0x02, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x03};
  const netpool::fuzz::run_result r = netpool::fuzz::run_pool_model(odd, sizeof odd);
  EXPECT_TRUE(r.ok) << r.failure;
  EXPECT_EQ(r.steps, 2u);
}

}  // namespace
