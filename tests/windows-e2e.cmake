# The Windows servers end to end (included by tests/windows.cmake): the
# Windows build's iomux-echo.exe (and iomux-httpd.exe) run under Wine and are
# talked to from Linux over loopback by tests/windows-e2e.sh, which checks
# every byte. The script runs natively (bash): the emulator only wraps
# executable targets. Entries: win/e2e-echo/<model>, win/e2e-httpd/<model>.
#
# IOMUX_HOST_LOAD: a Linux build's iomux-load (apps/load), for the load part
# of each test; without it that part is skipped and the rest still runs
# (bash's /dev/tcp and curl are the Linux clients then).
set(IOMUX_HOST_LOAD "" CACHE FILEPATH "A Linux iomux-load for the Windows end-to-end tests (optional)")

find_program(IOMUX_E2E_BASH bash)
if(IOMUX_WINE)
  set(IOMUX_E2E_WINE ${IOMUX_WINE})
else()
  set(IOMUX_E2E_WINE "${CMAKE_CROSSCOMPILING_EMULATOR}")
endif()

# The programs land where apps/windows.cmake puts them (the Linux layout).
function(iomux_win_e2e app model)
  set(args --wine "${IOMUX_E2E_WINE}" --exe ${CMAKE_BINARY_DIR}/apps/${app}/iomux-${app}.exe
           --model ${model} --app ${app})
  if(IOMUX_HOST_LOAD)
    list(APPEND args --load ${IOMUX_HOST_LOAD})
  endif()
  add_test(NAME win/e2e-${app}/${model}
           COMMAND ${IOMUX_E2E_BASH} ${CMAKE_CURRENT_LIST_DIR}/windows-e2e.sh ${args} ${ARGN})
  set_tests_properties(win/e2e-${app}/${model} PROPERTIES
    ENVIRONMENT "WINEDEBUG=-all"
    TIMEOUT 180
    SKIP_RETURN_CODE 77
    FIXTURES_REQUIRED wine
    LABELS "windows;e2e;${model}")
endfunction()

if(IOMUX_E2E_BASH)
  iomux_win_e2e(echo iocp)
  iomux_win_e2e(echo poll)
  if(IOMUX_HAVE_HTTP) # iomux-httpd is built when the HTTP module is
    iomux_win_e2e(httpd iocp)
    iomux_win_e2e(httpd poll)
  endif()
endif()
