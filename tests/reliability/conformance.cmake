# The HTTP/1.1 conformance and smuggling corpus (README "Reliability"):
# tests/reliability/conformance/vectors.txt, written from RFC 9112 / 9110,
# sent to iomux-httpd in a child process, one ctest entry per I/O model
# (the parsing is shared; the drivers around it differ: the app's Reactor
# code on select, poll, epoll (level and edge) and uring-reactor, the
# module's own iomux_http_server on epoll-proactor and uring, blocking
# reads on threads). About 3 s each. conformance/nginx sends the same
# vectors to Debian's nginx and fails on a disagreement not explained in
# conformance/known-disagreements.txt (skipped without nginx).
if(IOMUX_HAVE_HTTP AND EXISTS ${PROJECT_SOURCE_DIR}/apps/httpd/CMakeLists.txt)
  set(conformance_dir ${CMAKE_CURRENT_SOURCE_DIR}/reliability/conformance)
  add_executable(test-http-conformance test-http-conformance.c)
  target_link_libraries(test-http-conformance PRIVATE iomux_static)
  add_dependencies(test-http-conformance iomux-httpd)
  set(conformance_models epoll epoll-et epoll-proactor select poll threads)
  if(IOMUX_HAVE_URING)
    list(APPEND conformance_models uring uring-reactor)
  endif()
  foreach(m ${conformance_models})
    add_test(NAME conformance/${m}
      COMMAND test-http-conformance $<TARGET_FILE:iomux-httpd> ${conformance_dir}/vectors.txt ${m})
    set_tests_properties(conformance/${m} PROPERTIES TIMEOUT 90 SKIP_RETURN_CODE 77 LABELS "http;conformance")
  endforeach()
  add_test(NAME conformance/nginx
    COMMAND sh ${conformance_dir}/nginx-diff.sh ${PROJECT_BINARY_DIR} /usr/sbin/nginx)
  set_tests_properties(conformance/nginx PROPERTIES TIMEOUT 120 SKIP_RETURN_CODE 77 LABELS "http;conformance")
endif()
