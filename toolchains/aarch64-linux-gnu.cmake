# CMake toolchain file: aarch64 Linux (a gateway), Debian's g++-aarch64-linux-gnu.
# Test programs run on the build machine under qemu-user (qemu-aarch64, Debian's
# qemu-user package): CMake puts CMAKE_CROSSCOMPILING_EMULATOR in front of every
# add_test command whose program is a target of this build.
#
#   cmake -S examples/firmware -B build/aarch64 \
#         -DCMAKE_TOOLCHAIN_FILE=toolchains/aarch64-linux-gnu.cmake
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(PICOPAY_TARGET_TRIPLE aarch64-linux-gnu CACHE STRING "GNU triple of the cross toolchain")
find_program(CMAKE_C_COMPILER ${PICOPAY_TARGET_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_CXX_COMPILER ${PICOPAY_TARGET_TRIPLE}-g++ REQUIRED)
find_program(PICOPAY_SIZE ${PICOPAY_TARGET_TRIPLE}-size)
find_program(PICOPAY_NM ${PICOPAY_TARGET_TRIPLE}-nm)

# Debian's cross toolchain keeps the target's libc and libstdc++ here; target
# libraries installed with multiarch (apt-get install libfoo-dev:arm64) land in
# /usr/lib/aarch64-linux-gnu and are found through the same root.
set(CMAKE_FIND_ROOT_PATH /usr/${PICOPAY_TARGET_TRIPLE} /usr/lib/${PICOPAY_TARGET_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/${PICOPAY_TARGET_TRIPLE}/pkgconfig:/usr/share/pkgconfig")

find_program(PICOPAY_QEMU_AARCH64 qemu-aarch64)
if(PICOPAY_QEMU_AARCH64)
  # -L: where the dynamic loader and shared libraries of the target live.
  set(CMAKE_CROSSCOMPILING_EMULATOR "${PICOPAY_QEMU_AARCH64};-L;/usr/${PICOPAY_TARGET_TRIPLE}")
endif()
