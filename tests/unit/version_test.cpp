// netpool/version.hpp: the macros, the string and the CMake project's version say the same.
#include "netpool/version.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace {

TEST(VersionTest, TheStringSpellsTheMacros) {
  const std::string spelled = std::to_string(NETPOOL_VERSION_MAJOR) + "." +
                              std::to_string(NETPOOL_VERSION_MINOR) + "." +
                              std::to_string(NETPOOL_VERSION_PATCH);
  EXPECT_EQ(netpool::version_string, spelled);
}

TEST(VersionTest, TheNumberOrdersVersions) {
  static_assert(NETPOOL_VERSION_MINOR < 100 && NETPOOL_VERSION_PATCH < 100, "two digits each");
  EXPECT_EQ(NETPOOL_VERSION,
            NETPOOL_VERSION_MAJOR * 10000 + NETPOOL_VERSION_MINOR * 100 + NETPOOL_VERSION_PATCH);
#if NETPOOL_VERSION < 100
  ADD_FAILURE() << "usable in #if, and at least 0.1.0";
#endif
}

TEST(VersionTest, CMakeReadsItsVersionFromTheHeader) {
  EXPECT_EQ(netpool::version_string, std::string_view(NETPOOL_PROJECT_VERSION));
}

}  // namespace
