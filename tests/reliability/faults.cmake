# Fault injection (README "Reliability"): tests/test-faults.c, one ctest
# entry per scenario per backend, named faults-<scenario>/<backend>:
#   enomem     the loop's allocator fails the Nth / every k-th / every
#              allocation (loop_new, the Proactor API, an iomux_conn echo
#              server with client processes)
#   emfile     a low RLIMIT_NOFILE under a connect storm on an acceptor
#   smallring  an 8-buffer recv pool (and on uring a 16-entry CQ) under
#              1,000 connections echoing a known stream
# Clients are forked processes, not threads: no "threads" label. The long
# version: IOMUX_FAULTS_LONG=1 ctest -R faults- (or test-faults <scenario> long).
add_executable(test-faults test-faults.c)
target_link_libraries(test-faults PRIVATE iomux_static)
foreach(scenario enomem emfile smallring)
  foreach(b ${IOMUX_TEST_BACKENDS})
    add_test(NAME faults-${scenario}/${b} COMMAND test-faults ${scenario})
    set_tests_properties(faults-${scenario}/${b} PROPERTIES
      ENVIRONMENT "IOMUX_BACKEND=${b}"
      TIMEOUT 90
      SKIP_RETURN_CODE 77
      LABELS "loop;${b};faults")
  endforeach()
endforeach()
