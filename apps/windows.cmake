# The server programs on Windows (mingw-w64; included by apps/CMakeLists.txt
# when WIN32). Only the event-loop models exist there: poll (WSAPoll, the
# Reactor and the emulated Proactor) and iocp (the native Proactor). The
# threads and prefork models (blocking.c, threads.c, prefork.c: fork,
# signals, blocking per-thread sockets) are left out, and so is iomux-load
# (a Linux client: the Windows programs are driven from the Linux side).
set(IOMUX_APP_DIR ${CMAKE_CURRENT_LIST_DIR})

add_library(iomux_app STATIC
  ${IOMUX_APP_DIR}/common/accept.c
  ${IOMUX_APP_DIR}/common/listen.c
  ${IOMUX_APP_DIR}/common/loops.c
  ${IOMUX_APP_DIR}/common/model.c
  ${IOMUX_APP_DIR}/common/options.c
  ${IOMUX_APP_DIR}/common/runner.c
  ${IOMUX_APP_DIR}/common/util.c
  ${IOMUX_APP_DIR}/common/worker.c)
target_include_directories(iomux_app PUBLIC ${IOMUX_APP_DIR}/common)
target_link_libraries(iomux_app PUBLIC iomux_static Threads::Threads ws2_32)

add_executable(iomux-echo
  ${IOMUX_APP_DIR}/echo/main.c
  ${IOMUX_APP_DIR}/echo/loop.c
  ${IOMUX_APP_DIR}/echo/reactor.c
  ${IOMUX_APP_DIR}/echo/proactor.c)
target_link_libraries(iomux-echo PRIVATE iomux_app)
# Where the Linux build puts it (build/apps/echo/), so scripts find both.
set_target_properties(iomux-echo PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/echo)

# iomux-httpd: its Proactor version (the HTTP module on iomux_conn), when
# the build has the HTTP module (llhttp). The Reactor version (reactor.c:
# writev, sendfile(2)) and the blocking one are Linux-only.
if(IOMUX_HAVE_HTTP)
  add_executable(iomux-httpd
    ${IOMUX_APP_DIR}/httpd/main.c
    ${IOMUX_APP_DIR}/httpd/proactor.c)
  target_link_libraries(iomux-httpd PRIVATE iomux_app)
  set_target_properties(iomux-httpd PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_CURRENT_BINARY_DIR}/httpd)
endif()
