# The Windows leg (included by tests/CMakeLists.txt when WIN32): the test
# programs cross-compiled with mingw-w64 and run by ctest under Wine (the
# toolchain's CMAKE_CROSSCOMPILING_EMULATOR). One entry per test and backend,
# named win/<feature>/<backend>: the Proactor tests on both Windows backends
# (iocp, the native Proactor; poll, WSAPoll with the Proactor emulated over
# it), the Reactor tests on poll only (iocp refuses watchers: -ENOTSUP).
# tests/harness.h carries the Windows shims the test files rely on.

set(IOMUX_WIN_PROACTOR_TESTS echo sendorder closerace cancel accept timer timeout post work fileops
                             pool loop conn listen)
set(IOMUX_WIN_REACTOR_TESTS watch oneshot et hangup)
set(IOMUX_WIN_TIMEOUT 120)

# Wine's first start in a fresh prefix (wineboot, wineserver) takes 8-20 s
# or more: done once here, so that no test's own timeout pays for it. The
# command runs `wine64 cmd /c exit 0` (a trivial Windows program); the
# wineserver then stays up between tests.
if(CMAKE_CROSSCOMPILING_EMULATOR)
  add_test(NAME win/wine-start COMMAND ${CMAKE_CROSSCOMPILING_EMULATOR} cmd /c exit 0)
  set_tests_properties(win/wine-start PROPERTIES
    ENVIRONMENT "WINEDEBUG=-all"
    TIMEOUT 300
    FIXTURES_SETUP wine
    LABELS windows)
endif()

function(iomux_win_test name)
  add_executable(test-${name} test-${name}.c)
  target_link_libraries(test-${name} PRIVATE iomux_static)
  foreach(b ${ARGN})
    add_test(NAME win/${name}/${b} COMMAND test-${name})
    set_tests_properties(win/${name}/${b} PROPERTIES
      ENVIRONMENT "IOMUX_BACKEND=${b};WINEDEBUG=-all"
      TIMEOUT ${IOMUX_WIN_TIMEOUT}
      SKIP_RETURN_CODE 77
      FIXTURES_REQUIRED wine
      LABELS "windows;${b}")
  endforeach()
endfunction()

foreach(t ${IOMUX_WIN_PROACTOR_TESTS})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test-${t}.c)
    iomux_win_test(${t} poll iocp)
  endif()
endforeach()
foreach(t ${IOMUX_WIN_REACTOR_TESTS})
  if(EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/test-${t}.c)
    iomux_win_test(${t} poll)
  endif()
endforeach()

# The Windows servers under Wine, driven from Linux (tests/windows-e2e.sh).
include(${CMAKE_CURRENT_SOURCE_DIR}/windows-e2e.cmake OPTIONAL)
