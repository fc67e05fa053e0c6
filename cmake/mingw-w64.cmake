# Cross-compiling iomux for 64-bit Windows with Debian's mingw-w64
# (gcc-mingw-w64-x86-64), and running what it builds under Wine (wine64):
#   cmake -S . -B build-win -DCMAKE_TOOLCHAIN_FILE=cmake/mingw-w64.cmake
#   ctest --test-dir build-win       # each test .exe runs under Wine
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(IOMUX_MINGW x86_64-w64-mingw32)
# The posix flavour brings winpthreads, which the work pool's pthreads use.
find_program(CMAKE_C_COMPILER NAMES ${IOMUX_MINGW}-gcc-posix ${IOMUX_MINGW}-gcc REQUIRED)
find_program(CMAKE_RC_COMPILER NAMES ${IOMUX_MINGW}-windres)
set(CMAKE_FIND_ROOT_PATH /usr/${IOMUX_MINGW})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
# Debian puts the Wine loader outside $PATH.
find_program(IOMUX_WINE NAMES wine64 wine PATHS /usr/lib/wine)
if(IOMUX_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${IOMUX_WINE})
endif()
