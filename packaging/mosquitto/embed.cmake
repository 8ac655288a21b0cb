# picopay_embed_broker_files(<target>): generates <binary dir>/generated/picopay/broker_files.hpp
# holding conf.d/picopay-limits.conf and picopay.acl of this directory as C++ string
# constants (picopay::broker_files::kLimitsConf, kAcl), so that `picopay demo` and the
# test broker run exactly the shipped settings.
set(PICOPAY_BROKER_FILES_DIR ${CMAKE_CURRENT_LIST_DIR})
function(picopay_embed_broker_files target)
  set(limits ${PICOPAY_BROKER_FILES_DIR}/conf.d/picopay-limits.conf)
  set(acl ${PICOPAY_BROKER_FILES_DIR}/picopay.acl)
  file(READ ${limits} PICOPAY_BROKER_LIMITS_CONF)
  file(READ ${acl} PICOPAY_BROKER_ACL)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${limits} ${acl})
  set(out ${CMAKE_CURRENT_BINARY_DIR}/generated/picopay/broker_files.hpp)
  configure_file(${PICOPAY_BROKER_FILES_DIR}/broker_files.hpp.in ${out} @ONLY)
  target_include_directories(${target} PRIVATE ${CMAKE_CURRENT_BINARY_DIR}/generated)
endfunction()
