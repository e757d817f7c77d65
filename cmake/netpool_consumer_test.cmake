# CTest driver (cmake -P) for the packaging tests: builds and runs a tiny consumer project the way
# a user would, against netpool
#   MODE=install        `cmake --install` of this build into a fresh prefix, then find_package()
#   MODE=build-tree     find_package() with netpool_DIR pointing at this build tree (export())
#   MODE=subdirectory   add_subdirectory() of the netpool source tree
#
# Inputs (-D): MODE, CONSUMER_SOURCE_DIR, WORK_DIR, NETPOOL_SOURCE_DIR, NETPOOL_BINARY_DIR,
# GENERATOR, MAKE_PROGRAM, CXX_COMPILER, CXX_FLAGS, CONFIG (may be empty).
cmake_minimum_required(VERSION 3.25)

foreach(_var MODE CONSUMER_SOURCE_DIR WORK_DIR NETPOOL_SOURCE_DIR NETPOOL_BINARY_DIR GENERATOR CXX_COMPILER)
  if(NOT DEFINED ${_var} OR "${${_var}}" STREQUAL "")
    message(FATAL_ERROR "netpool_consumer_test.cmake: ${_var} is required")
  endif()
endforeach()

# Runs a command, echoing it; any failure fails the test with the command's output.
function(run_step what)
  message(STATUS "[${MODE}] ${what}")
  execute_process(COMMAND ${ARGN}
      RESULT_VARIABLE rc
      OUTPUT_VARIABLE out
      ERROR_VARIABLE out)
  if(NOT rc EQUAL 0)
    list(JOIN ARGN " " cmdline)
    message(FATAL_ERROR "[${MODE}] ${what} failed (${rc}):\n  ${cmdline}\n${out}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

# Start from nothing each time: a stale prefix or cache could hide a packaging bug.
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${WORK_DIR}")
set(build_dir "${WORK_DIR}/build")

set(config_args "")
if(NOT "${CONFIG}" STREQUAL "")
  set(config_args --config "${CONFIG}")
endif()

set(consumer_args
    -G "${GENERATOR}"
    "-DCMAKE_CXX_COMPILER=${CXX_COMPILER}"
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
    # Never pick up a netpool from ~/.cmake or the system registry instead of the one under test.
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
    -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF
)
if(NOT "${MAKE_PROGRAM}" STREQUAL "")
  list(APPEND consumer_args "-DCMAKE_MAKE_PROGRAM=${MAKE_PROGRAM}")
endif()
if(NOT "${CONFIG}" STREQUAL "")
  list(APPEND consumer_args "-DCMAKE_BUILD_TYPE=${CONFIG}")
endif()

if(MODE STREQUAL "install")
  set(prefix "${WORK_DIR}/prefix")
  run_step("install into ${prefix}"
      "${CMAKE_COMMAND}" --install "${NETPOOL_BINARY_DIR}" --prefix "${prefix}" ${config_args})
  # The installed tree must be self-contained: headers, library, package files.
  foreach(_f include/netpool/socket.hpp include/netpool/dialer.hpp)
    if(NOT EXISTS "${prefix}/${_f}")
      message(FATAL_ERROR "[install] ${_f} was not installed")
    endif()
  endforeach()
  file(GLOB_RECURSE _configs "${prefix}/*/netpoolConfig.cmake" "${prefix}/*/netpoolConfigVersion.cmake")
  list(LENGTH _configs _n)
  if(NOT _n EQUAL 2)
    message(FATAL_ERROR "[install] expected netpoolConfig.cmake and netpoolConfigVersion.cmake, "
                        "found: ${_configs}")
  endif()
  list(APPEND consumer_args "-DCMAKE_PREFIX_PATH=${prefix}" "-DNETPOOL_EXPECT_DIR_UNDER=${prefix}")
elseif(MODE STREQUAL "build-tree")
  list(APPEND consumer_args
      "-Dnetpool_DIR=${NETPOOL_BINARY_DIR}" "-DNETPOOL_EXPECT_DIR_UNDER=${NETPOOL_BINARY_DIR}")
elseif(MODE STREQUAL "subdirectory")
  list(APPEND consumer_args "-DNETPOOL_SOURCE_DIR=${NETPOOL_SOURCE_DIR}")
else()
  message(FATAL_ERROR "netpool_consumer_test.cmake: unknown MODE '${MODE}'")
endif()

run_step("configure ${CONSUMER_SOURCE_DIR}"
    "${CMAKE_COMMAND}" -S "${CONSUMER_SOURCE_DIR}" -B "${build_dir}" ${consumer_args})
run_step("build" "${CMAKE_COMMAND}" --build "${build_dir}" ${config_args})

# Single-config generators put the executable at the top of the build dir; multi-config ones in
# a per-config subdirectory.
set(exe "${build_dir}/netpool_consumer")
if(NOT EXISTS "${exe}" AND NOT "${CONFIG}" STREQUAL "")
  set(exe "${build_dir}/${CONFIG}/netpool_consumer")
endif()
run_step("run ${exe}" "${exe}")
message(STATUS "[${MODE}] consumer output:\n${step_output}")
message(STATUS "[${MODE}] OK")
