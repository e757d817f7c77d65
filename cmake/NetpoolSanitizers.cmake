# NETPOOL_SANITIZE: "" (off), "address,undefined" or "thread" (also "address" or "undefined" alone).
#
# Applied with directory-scoped add_compile_options()/add_link_options() from netpool's top-level
# directory, so every target netpool defines (library, tests, benchmarks, examples, whoever writes
# their CMakeLists) is instrumented without each of them opting in. As a subproject netpool never
# touches its parent's flags: the option is ignored with a warning (instrument the whole program
# from the parent instead; a partly instrumented TSan program reports false races).
#
# Sets NETPOOL_SANITIZERS_ACTIVE (TRUE/FALSE) for the tests' CMakeLists (e.g. the allocation-
# counting tests replace operator new, which ASan also replaces).

set(_netpool_sanitize_allowed "" "address" "undefined" "address,undefined" "undefined,address" "thread")
if(NOT NETPOOL_SANITIZE IN_LIST _netpool_sanitize_allowed)
  message(FATAL_ERROR "NETPOOL_SANITIZE='${NETPOOL_SANITIZE}': expected one of \"\", "
                      "\"address,undefined\", \"thread\" (TSan cannot be combined with ASan)")
endif()

set(NETPOOL_SANITIZERS_ACTIVE FALSE)
if(NOT NETPOOL_SANITIZE STREQUAL "")
  if(NOT PROJECT_IS_TOP_LEVEL)
    message(WARNING "netpool: NETPOOL_SANITIZE is only honoured when netpool is the top-level "
                    "project; ignoring '${NETPOOL_SANITIZE}'")
  elseif(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(FATAL_ERROR "netpool: NETPOOL_SANITIZE needs GCC or Clang")
  else()
    set(NETPOOL_SANITIZERS_ACTIVE TRUE)
    # Frame pointers: readable stacks from the sanitizers' fast unwinder.
    set(_netpool_san_flags "-fsanitize=${NETPOOL_SANITIZE}" -fno-omit-frame-pointer)
    if(NETPOOL_SANITIZE MATCHES "undefined")
      # UBSan only prints by default; a CI run must fail on the first report.
      list(APPEND _netpool_san_flags -fno-sanitize-recover=all)
    endif()
    add_compile_options(${_netpool_san_flags})
    add_link_options(${_netpool_san_flags})
    message(STATUS "netpool: sanitizers: ${NETPOOL_SANITIZE}")
  endif()
endif()
