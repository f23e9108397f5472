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
  if(STATION_SANITIZE)
    target_compile_options(${tgt} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer
                                          -fno-sanitize-recover=undefined)
    target_link_options(${tgt} PRIVATE -fsanitize=address,undefined)
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

# station_test(name SOURCES ... LIBS ... [LABELS ...]): a cmocka test run by ctest.
# A test that exits 77 is reported as skipped (used when ../shared or hardware is absent).
function(station_test name)
  cmake_parse_arguments(A "" "" "SOURCES;LIBS;LABELS;ARGS" ${ARGN})
  add_executable(${name} ${A_SOURCES})
  station_target_setup(${name})
  target_link_libraries(${name} PRIVATE ${A_LIBS} PkgConfig::CMOCKA)
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
