# Embeds a file as a C++ byte array: cmake -DIN=file -DOUT=file.cpp -DNAME=kSymbol -P embed.cmake
# (the hub serves the dashboard page from memory: no install path, no build-tree path).
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n)
math(EXPR size "${n} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REGEX REPLACE "(0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,0x..,)" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by agent/dashboard/embed.cmake: do not edit.\n#include <cstddef>\nnamespace picopay::hub {\nextern const unsigned char ${NAME}[];\nextern const size_t ${NAME}Size;\nconst unsigned char ${NAME}[] = {\n${bytes}0};\nconst size_t ${NAME}Size = ${size};\n}  // namespace picopay::hub\n")
file(RENAME "${OUT}.tmp" "${OUT}")
