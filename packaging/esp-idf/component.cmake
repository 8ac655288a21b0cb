# The ESP-IDF component (idf_component.yml): included by the top-level CMakeLists.txt
# when ESP-IDF processes it (ESP_PLATFORM). The core and the bare-metal port only; the
# project provides libsecp256k1 (secp256k1.h, secp256k1_recovery.h).
get_filename_component(_picopay_root "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
file(GLOB _picopay_sources ${_picopay_root}/core/src/*.cpp ${_picopay_root}/port/baremetal/src/*.cpp)
idf_component_register(SRCS ${_picopay_sources}
                       INCLUDE_DIRS ${_picopay_root}/core/include ${_picopay_root}/port/include
                                    ${_picopay_root}/port/baremetal/include)
target_compile_options(${COMPONENT_LIB} PRIVATE -fno-exceptions -fno-rtti)
