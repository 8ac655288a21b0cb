# Defines the static library target `secp256k1` for a cross build, compiled from
# Debian's libsecp256k1 source package (fetched by fetch-secp256k1-source.sh into the
# build directory at configure time; nothing upstream lives in the repository).
#
# include() it from a cross project *before* the picopay core is added: core/ links the
# `secp256k1` target when it exists (else it asks pkg-config for the host library).
#
# Configured for size (the firmware budget, docs/firmware.md):
#   ECMULT_WINDOW_SIZE=2     verification/recovery table: 2 x 64 B instead of 2 x 512 KiB
#   COMB_BLOCKS=2, TEETH=5   signing (ecmult_gen) table: 2 KiB (configure's --with-ecmult-gen-kb=2)
#   ENABLE_MODULE_RECOVERY   public-key recovery (eth_sign / ecrecover)
#   USE_EXTERNAL_DEFAULT_CALLBACKS  no fprintf/abort: our callbacks in
#                            port/baremetal/src/secp256k1_callbacks.c (bare metal only)
# Only the preallocated context API is used by picopay, so malloc is never linked
# (--gc-sections drops secp256k1_context_create & co.).
#
# Variables: PICOPAY_SECP256K1_SUITE (Debian suite, default trixie),
#            PICOPAY_SECP256K1_SOURCE_DIR (use an already unpacked tree instead).
include_guard(GLOBAL)

set(PICOPAY_SECP256K1_SUITE "trixie" CACHE STRING "Debian suite whose libsecp256k1 source is built")
set(PICOPAY_SECP256K1_SOURCE_DIR "" CACHE PATH "Unpacked libsecp256k1 source (empty: apt-get source)")
option(PICOPAY_SECP256K1_EXTERNAL_CALLBACKS "Use picopay's own libsecp256k1 default callbacks (no stdio/abort)" ON)

set(_picopay_secp_dir "${PICOPAY_SECP256K1_SOURCE_DIR}")
if(NOT _picopay_secp_dir)
  execute_process(
    COMMAND "${CMAKE_CURRENT_LIST_DIR}/fetch-secp256k1-source.sh"
            "${CMAKE_BINARY_DIR}/_deps/libsecp256k1" "${PICOPAY_SECP256K1_SUITE}"
    OUTPUT_VARIABLE _picopay_secp_dir
    OUTPUT_STRIP_TRAILING_WHITESPACE
    RESULT_VARIABLE _picopay_secp_rc)
  if(NOT _picopay_secp_rc EQUAL 0 OR NOT EXISTS "${_picopay_secp_dir}/src/secp256k1.c")
    message(FATAL_ERROR "could not fetch Debian's libsecp256k1 source (${_picopay_secp_rc}); "
                        "set PICOPAY_SECP256K1_SOURCE_DIR to an unpacked tree")
  endif()
endif()
message(STATUS "libsecp256k1 for the target from ${_picopay_secp_dir}")

add_library(secp256k1 STATIC
  "${_picopay_secp_dir}/src/secp256k1.c"
  "${_picopay_secp_dir}/src/precomputed_ecmult.c"
  "${_picopay_secp_dir}/src/precomputed_ecmult_gen.c")
if(PICOPAY_SECP256K1_EXTERNAL_CALLBACKS)
  target_sources(secp256k1 PRIVATE
    "${CMAKE_CURRENT_LIST_DIR}/../port/baremetal/src/secp256k1_callbacks.c")
  target_compile_definitions(secp256k1 PRIVATE USE_EXTERNAL_DEFAULT_CALLBACKS=1)
endif()
target_compile_definitions(secp256k1 PRIVATE
  ECMULT_WINDOW_SIZE=2
  COMB_BLOCKS=2
  COMB_TEETH=5
  ENABLE_MODULE_RECOVERY=1)
target_include_directories(secp256k1 SYSTEM PUBLIC "${_picopay_secp_dir}/include")
target_include_directories(secp256k1 PRIVATE "${_picopay_secp_dir}/src" "${_picopay_secp_dir}")
# Upstream code: its own warnings are not ours to fix.
target_compile_options(secp256k1 PRIVATE -w -Os -fstack-usage)
set_target_properties(secp256k1 PROPERTIES C_STANDARD 90 C_EXTENSIONS OFF)
