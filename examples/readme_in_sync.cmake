# Fails unless README.md quotes examples/usage/main.cpp verbatim between the markers
#   <!-- usage example: examples/usage/main.cpp -->  and  <!-- end of usage example -->
# (inside a ```cpp fence), so the README's example is always the one CI compiles and runs.
#   cmake -DREADME=README.md -DEXAMPLE=examples/usage/main.cpp -P readme_in_sync.cmake
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
set(begin_marker "<!-- usage example: examples/usage/main.cpp -->\n```cpp\n")
set(end_marker "```\n<!-- end of usage example -->")
string(FIND "${readme}" "${begin_marker}" begin)
string(FIND "${readme}" "${end_marker}" end)
if(begin EQUAL -1 OR end EQUAL -1)
  message(FATAL_ERROR "README.md: usage example markers not found")
endif()
string(LENGTH "${begin_marker}" begin_length)
math(EXPR start "${begin} + ${begin_length}")
math(EXPR length "${end} - ${start}")
string(SUBSTRING "${readme}" ${start} ${length} quoted)
if(NOT quoted STREQUAL example)
  message(FATAL_ERROR "README.md's usage example differs from ${EXAMPLE}: copy the file into the README")
endif()
message(STATUS "README.md quotes ${EXAMPLE} verbatim")
