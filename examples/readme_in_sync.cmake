# Fails unless README.md quotes an example verbatim, so that the README's code is always the code
# CI compiles and runs.
#
# The whole file (the usage example), between
#   <!-- usage example: examples/usage/main.cpp -->  and  <!-- end of usage example -->
#   cmake -DREADME=README.md -DEXAMPLE=examples/usage/main.cpp -P readme_in_sync.cmake
#
# Or one region of a file, the lines between "// [README: NAME]" and "// [README end: NAME]" in the
# example, quoted between
#   <!-- quoted from examples/hiredis/main.cpp: NAME -->  and  <!-- end of quote: NAME -->
#   cmake -DREADME=README.md -DEXAMPLE=examples/hiredis/main.cpp -DREGION=NAME -P readme_in_sync.cmake
#
# Either way the quote sits inside a ```cpp fence right after the first marker.
file(READ "${README}" readme)
file(READ "${EXAMPLE}" example)
get_filename_component(root "${README}" ABSOLUTE)
get_filename_component(root "${root}" DIRECTORY)
get_filename_component(example_abs "${EXAMPLE}" ABSOLUTE)
file(RELATIVE_PATH example_path "${root}" "${example_abs}")  # as the README names it

if(DEFINED REGION)
  set(region_begin "// [README: ${REGION}]\n")
  set(region_end "// [README end: ${REGION}]\n")
  string(FIND "${example}" "${region_begin}" rbegin)
  string(FIND "${example}" "${region_end}" rend)
  if(rbegin EQUAL -1 OR rend EQUAL -1)
    message(FATAL_ERROR "${EXAMPLE}: region markers for \"${REGION}\" not found")
  endif()
  string(LENGTH "${region_begin}" rbegin_length)
  math(EXPR rstart "${rbegin} + ${rbegin_length}")
  math(EXPR rlength "${rend} - ${rstart}")
  string(SUBSTRING "${example}" ${rstart} ${rlength} example)
  set(begin_marker "<!-- quoted from ${example_path}: ${REGION} -->\n```cpp\n")
  set(end_marker "```\n<!-- end of quote: ${REGION} -->")
  set(what "${example_path} (region \"${REGION}\")")
else()
  set(begin_marker "<!-- usage example: ${example_path} -->\n```cpp\n")
  set(end_marker "```\n<!-- end of usage example -->")
  set(what "${example_path}")
endif()

string(FIND "${readme}" "${begin_marker}" begin)
string(FIND "${readme}" "${end_marker}" end)
if(begin EQUAL -1 OR end EQUAL -1)
  message(FATAL_ERROR "README.md: markers for ${what} not found")
endif()
string(LENGTH "${begin_marker}" begin_length)
math(EXPR start "${begin} + ${begin_length}")
math(EXPR length "${end} - ${start}")
if(length LESS 0)
  message(FATAL_ERROR "README.md: the end marker for ${what} comes before its begin marker")
endif()
string(SUBSTRING "${readme}" ${start} ${length} quoted)
if(NOT quoted STREQUAL example)
  message(FATAL_ERROR "README.md's quote of ${what} differs from the file: copy it into the README")
endif()
message(STATUS "README.md quotes ${what} verbatim")
