# Packet loss and resets between two network namespaces (README
# "Reliability"): tests/test-netloss.c creates two anonymous namespaces
# joined by a veth pair, installs nftables rules in the server's (random
# drops, or TCP resets), runs iomux-echo (reactor and proactor) and an
# iomux_conn echo server there and Proactor / Reactor / iomux_conn clients
# here, one ctest entry per scenario per backend: netloss-<drop|reset>/<backend>.
# Needs root (CAP_SYS_ADMIN + CAP_NET_ADMIN), ip and nft: skipped (77)
# without them. The long version is the same program with bigger numbers:
#   IOMUX_BACKEND=epoll build/tests/test-netloss drop build/apps/echo/iomux-echo \
#       --conns 10 --bytes 8M --deadline 300 --bound 900
add_executable(test-netloss test-netloss.c)
target_link_libraries(test-netloss PRIVATE iomux_static)
# apps/ is added after tests/: if(TARGET iomux-echo) would be false here.
set(netloss_echo -)
if(EXISTS ${PROJECT_SOURCE_DIR}/apps/echo/CMakeLists.txt)
  add_dependencies(test-netloss iomux-echo)
  set(netloss_echo $<TARGET_FILE:iomux-echo>)
endif()
foreach(scenario drop reset)
  foreach(b ${IOMUX_TEST_BACKENDS})
    add_test(NAME netloss-${scenario}/${b} COMMAND test-netloss ${scenario} ${netloss_echo})
    set_tests_properties(netloss-${scenario}/${b} PROPERTIES
      ENVIRONMENT "IOMUX_BACKEND=${b}"
      TIMEOUT 60
      SKIP_RETURN_CODE 77
      LABELS "loop;${b}")
  endforeach()
endforeach()
