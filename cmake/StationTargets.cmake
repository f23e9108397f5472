# Per-target warnings and sanitizers (never global CMAKE_C_FLAGS), and a test helper.

set(STATION_WARNINGS -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes
    -Wstrict-prototypes -Wvla -Wno-unused-parameter)

function(station_target_setup tgt)
  target_compile_options(${tgt} PRIVATE ${STATION_WARNINGS})
  # 64-bit file offsets and time_t on 32-bit targets (armhf): readdir() and stat() fail with
  # EOVERFLOW on large inode numbers otherwise, and time_t ends in 2038. A no-op on 64-bit.
  # Safe against Debian 12's armhf libraries (32-bit time) because no library call of ours
  # passes a time_t, timeval, timespec or off_t (libusb gets int ms timeouts): keep it so.
  target_compile_definitions(${tgt} PRIVATE _GNU_SOURCE _FILE_OFFSET_BITS=64 _TIME_BITS=64)
  if(STATION_WERROR)
    target_compile_options(${tgt} PRIVATE -Werror)
  endif()
  if(STATION_SANITIZE OR STATION_FUZZ)
    target_compile_options(${tgt} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                          -fno-sanitize-recover=undefined)
    target_link_options(${tgt} PRIVATE -fsanitize=address,undefined)
  endif()
  if(STATION_FUZZ)
    # Coverage feedback for libFuzzer in every library the fuzz targets link.
    target_compile_options(${tgt} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
endfunction()

# station_library(name SOURCES ... LIBS ...)
function(station_library name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS" ${ARGN})
  add_library(${name} STATIC ${A_SOURCES})
  station_target_setup(${name})
  target_include_directories(${name} PUBLIC ${CMAKE_SOURCE_DIR})
  target_link_libraries(${name} PUBLIC ${A_LIBS})
endfunction()

# station_test(name SOURCES ... LIBS ... [LABELS ...]): a cmocka test run by ctest. It links
# st_testutil (station/core/testutil.h: scratch names under $TMPDIR).
# A test that exits 77 is reported as skipped (used when ../shared or hardware is absent).
function(station_test name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  station_target_setup(${name})
  target_link_libraries(${name} PRIVATE ${A_LIBS} st_testutil PkgConfig::CMOCKA)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  target_compile_definitions(${name} PRIVATE
    STATION_SHARED_DIR="${STATION_SHARED_DIR}"
    STATION_SOURCE_DIR="${STATION_SOURCE_DIR}"
    STATION_BINARY_DIR="${CMAKE_BINARY_DIR}")
  add_test(NAME ${name} COMMAND ${name} ${A_ARGS})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300
                       ENVIRONMENT "CMOCKA_MESSAGE_OUTPUT=stdout")
  if(A_LABELS)
    set_tests_properties(${name} PROPERTIES LABELS "${A_LABELS}")
  endif()
endfunction()

# station_fuzz(name SOURCES ... LIBS ... CORPUS dir): a fuzz target, a file defining
# LLVMFuzzerTestOneInput(data, size), with its seed corpus (a directory of input files in the
# repository, relative to the calling CMakeLists.txt).
#   - Ordinary builds link it with cmake/fuzz_replay.c, a main that feeds it every file of
#     the corpus once; ctest runs that as `<name>_seeds` (so the seeds are regression
#     tests in the -Werror and the ASan+UBSan builds).
#   - With -DSTATION_FUZZ=ON (clang only; ASan+UBSan are implied) it is a libFuzzer binary,
#     and ctest runs `<name>` (label `fuzz`) for STATION_FUZZ_SECONDS seconds from the
#     seeds, keeping what it finds in <build>/fuzz/<name>/corpus and any crash in
#     <build>/fuzz/<name>/crash-*. A crash, leak or sanitizer report fails the test.
# Every fuzz target is also a dependency of the `fuzzers` target.
function(station_fuzz name)
  cmake_parse_arguments(A "" "CORPUS" "SOURCES;LIBS" ${ARGN})
  if(NOT A_CORPUS)
    message(FATAL_ERROR "station_fuzz(${name}): CORPUS is required")
  endif()
  get_filename_component(corpus "${A_CORPUS}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT IS_DIRECTORY "${corpus}")
    message(FATAL_ERROR "station_fuzz(${name}): no corpus directory ${corpus}")
  endif()
  if(NOT TARGET fuzzers)
    add_custom_target(fuzzers)
  endif()
  if(STATION_FUZZ)
    add_executable(${name} ${A_SOURCES})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${name} ${A_SOURCES} ${PROJECT_SOURCE_DIR}/cmake/fuzz_replay.c)
  endif()
  station_target_setup(${name})
  target_link_libraries(${name} PRIVATE ${A_LIBS})
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR})
  add_dependencies(fuzzers ${name})
  if(STATION_FUZZ)
    set(work "${CMAKE_BINARY_DIR}/fuzz/${name}")
    file(MAKE_DIRECTORY "${work}/corpus")
    # -timeout: one input taking seconds is a hang; -rss_limit_mb: a leak or a blow-up.
    add_test(NAME ${name}
             COMMAND ${name} -max_total_time=${STATION_FUZZ_SECONDS} -timeout=10
                     -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=${work}/
                     ${work}/corpus ${corpus})
    set_tests_properties(${name} PROPERTIES LABELS fuzz
                         TIMEOUT ${STATION_FUZZ_TIMEOUT})
  else()
    add_test(NAME ${name}_seeds COMMAND ${name} ${corpus})
    set_tests_properties(${name}_seeds PROPERTIES TIMEOUT 120)
  endif()
endfunction()
