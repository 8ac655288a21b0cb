# CMake toolchain file: ARM Cortex-M4F bare metal (thumb, hard float, FPv4-SP), Debian's
# gcc-arm-none-eabi + libnewlib-arm-none-eabi (newlib-nano).
#
#   cmake -S examples/firmware -B build/firmware \
#         -DCMAKE_TOOLCHAIN_FILE=toolchains/cortex-m4.cmake
#
# Everything is compiled for size (-Os), with one section per function/object so the
# linker drops what is unused (--gc-sections), and C++ without exceptions, RTTI or
# thread-safe statics (docs/design.md §2). The top-level project is told PICOPAY_HOST=OFF:
# core + port only, no Linux programs or tests.
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR cortex-m4)

set(PICOPAY_TARGET_TRIPLE arm-none-eabi CACHE STRING "GNU triple of the cross toolchain")
find_program(CMAKE_C_COMPILER ${PICOPAY_TARGET_TRIPLE}-gcc REQUIRED)
find_program(CMAKE_CXX_COMPILER ${PICOPAY_TARGET_TRIPLE}-g++ REQUIRED)
find_program(CMAKE_ASM_COMPILER ${PICOPAY_TARGET_TRIPLE}-gcc REQUIRED)
find_program(PICOPAY_SIZE ${PICOPAY_TARGET_TRIPLE}-size)
find_program(PICOPAY_NM ${PICOPAY_TARGET_TRIPLE}-nm)
find_program(PICOPAY_OBJCOPY ${PICOPAY_TARGET_TRIPLE}-objcopy)

# No host executable can be linked without a board's startup code and linker script:
# let CMake's compiler checks build a static library instead.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(PICOPAY_CPU_FLAGS "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16")
set(CMAKE_C_FLAGS_INIT "${PICOPAY_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_CXX_FLAGS_INIT "${PICOPAY_CPU_FLAGS} -ffunction-sections -fdata-sections -fno-exceptions -fno-rtti -fno-threadsafe-statics -fno-use-cxa-atexit")
set(CMAKE_ASM_FLAGS_INIT "${PICOPAY_CPU_FLAGS}")
set(CMAKE_EXE_LINKER_FLAGS_INIT "${PICOPAY_CPU_FLAGS} --specs=nano.specs -Wl,--gc-sections")

# Size is the budget on a microcontroller. CMake appends its own per-build-type flags
# (-O2 for RelWithDebInfo) after anything set here, so the cross projects default to
# CMAKE_BUILD_TYPE=MinSizeRel (-Os) instead (examples/firmware/CMakeLists.txt).

# Libraries and headers come from the toolchain's sysroot, programs from the host.
set(CMAKE_FIND_ROOT_PATH /usr/lib/${PICOPAY_TARGET_TRIPLE})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

# Firmware builds core + port only (see the top-level CMakeLists.txt).
set(PICOPAY_HOST OFF CACHE BOOL "Build the Linux programs, tests and benchmarks" FORCE)
set(PICOPAY_BAREMETAL ON CACHE BOOL "Bare-metal target: no OS, no heap" FORCE)
