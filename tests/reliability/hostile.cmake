# Hostile clients and the drain under load (README "Reliability"):
# tests/test-hostile.c runs iomux-httpd as a child on port 0 and attacks it
# with slowhttptest (slowloris, slow body), slow readers, an RST storm, and
# SIGTERM under wrk / iomux-load / a checking client of its own. One entry
# per scenario and model; quick sizes here, IOMUX_HOSTILE_FULL=1 (or
# scripts/reliability/hostile.sh) for the full ones. Exit 77 (skip) when
# slowhttptest, wrk or io_uring is missing. apps/ is added after tests/, so
# the targets are named by condition, as in tests/CMakeLists.txt.
if(IOMUX_HAVE_HTTP AND EXISTS ${PROJECT_SOURCE_DIR}/apps/httpd/CMakeLists.txt
   AND EXISTS ${PROJECT_SOURCE_DIR}/apps/load/CMakeLists.txt)
  add_executable(test-hostile ${CMAKE_CURRENT_SOURCE_DIR}/test-hostile.c)
  target_link_libraries(test-hostile PRIVATE iomux_static)
  add_dependencies(test-hostile iomux-httpd iomux-load)
  set(hostile_alone)   # they measure latency under attack: nothing else runs
  set(hostile_others)  # thousands of sockets: one of them at a time
  foreach(m epoll uring)
    list(APPEND hostile_alone slowloris-${m} slowbody-${m})
    list(APPEND hostile_others drain-${m} slowfile-${m})
  endforeach()
  foreach(m select poll epoll epoll-et uring uring-poll)
    list(APPEND hostile_others rst-${m} slowread-${m})
  endforeach()
  list(APPEND hostile_others rst-epoll-proactor)
  foreach(s ${hostile_alone} ${hostile_others})
    add_test(NAME hostile/${s}
      COMMAND test-hostile $<TARGET_FILE:iomux-httpd> $<TARGET_FILE:iomux-load> ${s})
    set_tests_properties(hostile/${s} PROPERTIES TIMEOUT 90 SKIP_RETURN_CODE 77
      RESOURCE_LOCK iomux_hostile LABELS "app;hostile")
  endforeach()
  foreach(s ${hostile_alone})
    set_tests_properties(hostile/${s} PROPERTIES RUN_SERIAL TRUE)
  endforeach()
endif()
